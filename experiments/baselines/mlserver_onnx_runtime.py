"""An MLServer runtime that serves an ONNX graph with ONNX Runtime: the baseline the serving
benchmark (experiments/bench_serving.py --mlserver) compares `hamnet serve` against.

MLServer ships no ONNX runtime; this is the one a user would write (MLServer's custom
runtime pattern): inputs decoded with MLServer's NumpyCodec, one `InferenceSession.run`
per request, outputs encoded back. ONNX Runtime gets the same settings as the service
under test (one intra-op thread; the graph's batch dimension left symbolic). Loaded by
MLServer from `model-settings.json` (`"implementation":
"mlserver_onnx_runtime.OnnxRuntimeModel"`, `"parameters": {"uri": "<file>.onnx"}`).
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(self.settings.parameters.uri, options,
                                            providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        values = self.session.run(self.output_names, feeds)
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self.output_names, values,
                                                                                         strict=True)])
