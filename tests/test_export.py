from hamnet_jax.export.onnx import export_onnx, onnx_parity
from hamnet_jax.run_dir import load_run


def test_onnx_matches_jax_at_batch_1_and_64(tiny_run, tmp_path):
    run = load_run(tiny_run)
    pre, v = run.preprocessor, run.config.data.max_visits
    path = export_onnx(run.model_config, run.params, pre.target_mean, pre.target_std, v, tmp_path / "m.onnx")
    parity = onnx_parity(path, run.model_config, run.params, pre.target_mean, pre.target_std, v, (1, 64))
    assert set(parity) == {1, 64}
    for diffs in parity.values():
        assert diffs["mean"] <= 1e-4 and diffs["log_var"] <= 1e-4, parity
