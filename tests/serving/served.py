"""Requests for the served test repository (conftest.py's `server`)."""

import numpy as np
import tritonclient.grpc as tc

from hamnet_jax.inference.raw_inputs import random_raw


def request_of(server, model, n, seed=0):
    m = server.servicer.repository.get(model)
    return m, random_raw(m.raw.spec, m.raw.preprocessor, n, seed=seed)


def infer_inputs(arrays):
    inputs = []
    for name, value in arrays.items():
        tensor = tc.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(value, np.float32))
        inputs.append(tensor)
    return inputs


def raw_request(request, model="hamnet", request_id=""):
    from hamnet_jax.client.client import infer_request

    return infer_request(model, request, request_id=request_id)
