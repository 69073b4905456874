"""Triton's descriptions of a served model, as the protobuf messages both protocols answer
with: gRPC sends them as they are, REST as their JSON (Triton's HTTP API uses the same
messages): metadata, configuration (model_config.proto) and statistics.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from hamnet_jax.serving.repository import ServedModel


def model_metadata(model: ServedModel, versions: list[str]) -> Any:
    """Triton's ModelMetadataResponse: FP32 inputs with a variable batch, one value per subject out."""
    response = pb.ModelMetadataResponse(name=model.name, versions=versions, platform=model.platform)
    for name, shape in model.raw.spec.shapes(-1).items():
        response.inputs.add(name=name, datatype="FP32", shape=list(shape))
    for name in model.predictor.output_names:
        response.outputs.add(name=name, datatype="FP32", shape=[-1])
    return response


def model_config(model: ServedModel) -> Any:
    """Triton's ModelConfig of a served model: batched (dims exclude the batch), FP32 raw
    inputs, one value per subject for each output (dims [1] reshaped to a scalar)."""
    config = mc.ModelConfig(name=model.name, platform=model.platform,
                            max_batch_size=int(model.options.batch_size))
    for name, shape in model.raw.spec.shapes(-1).items():
        config.input.add(name=name, data_type=mc.TYPE_FP32, dims=list(shape[1:]))
    for name in model.predictor.output_names:
        out = config.output.add(name=name, data_type=mc.TYPE_FP32, dims=[1])
        out.reshape.shape.extend([])
    config.version_policy.all.SetInParent()
    if model.batcher is not None:
        config.dynamic_batching.preferred_batch_size.extend(model.batcher.preferred)
        config.dynamic_batching.max_queue_delay_microseconds = int(model.options.max_queue_delay_us)
    return config


def model_statistics(models: list[ServedModel]) -> Any:
    """Triton's ModelStatisticsResponse of `models` (both protocols answer it)."""
    response = pb.ModelStatisticsResponse()
    for m in models:
        with m.lock:
            s = m.stats
            stats = response.model_stats.add(name=m.name, version=m.version, last_inference=s.last_inference_ms,
                                             inference_count=s.inference_count,
                                             execution_count=s.execution_count)
            stats.inference_stats.success.count, stats.inference_stats.success.ns = s.success_count, s.success_ns
            stats.inference_stats.fail.count, stats.inference_stats.fail.ns = s.fail_count, s.fail_ns
            # queue and compute as Triton reports them (perf_analyzer needs them: without a version it
            # takes the version whose queue count rose, and it checks the three compute counts are one
            # count, the executions): with the batcher, its own waits and timings; without it a request
            # goes straight to an executor thread (no queue of ours) and one call does all three parts
            b, i = m.batcher, stats.inference_stats
            if b is not None:
                i.queue.count, i.queue.ns = b.dequeued, b.queue_ns
                parts = (b.batches, b.input_ns), (b.batches, b.compute_ns), (b.batches, b.output_ns)
            else:
                i.queue.count, i.queue.ns = s.success_count, 0
                parts = (s.execution_count, 0), (s.execution_count, s.success_ns), (s.execution_count, 0)
            for part, (count, ns) in zip((i.compute_input, i.compute_infer, i.compute_output), parts, strict=True):
                part.count, part.ns = count, ns
    return response
