"""--init-adapter: a run continued from an adapter starts where that adapter ended (its step-0 validation loss is the
parent's final one on the same data), and an adapter of another rank is refused with a bad_args error."""
from conftest import run_cli, schema_failures, train_args

ARGS = ["--batch", "4", "--lr", "1e-2", "--rank", "4", "--alpha", "8", "--eval-every", "3", "--patience", "0",
        "--seed", "2"]


def _ev(events, name):
    return [e for e in events if e["event"] == name]


def test_continue_from_an_adapter_starts_at_its_loss(tiny_models, small_dataset, tmp_path):
    model = tiny_models[("llama", "f32")]
    parent = str(tmp_path / "a.gguf")
    p, events = run_cli(*train_args(model, small_dataset, str(tmp_path / "a"), parent, "--steps", "6", *ARGS))
    assert p.returncode == 0, p.stderr
    done_a = events[-1]
    assert done_a["event"] == "done" and done_a["val_loss"] < done_a["val_loss_base"]
    assert "init_adapter" not in _ev(events, "start")[0]

    child = str(tmp_path / "b.gguf")
    p, events = run_cli(*train_args(model, small_dataset, str(tmp_path / "b"), child, "--steps", "3",
                                    "--init-adapter", parent, *ARGS))
    assert p.returncode == 0, p.stderr
    assert _ev(events, "start")[0]["init_adapter"] == parent
    assert schema_failures(p.stdout) in (None, [])
    step0 = [e for e in _ev(events, "eval") if e["step"] == 0][0]["val_loss"]
    done_b = events[-1]
    print(f"parent: base {done_a['val_loss_base']:.4f} -> {done_a['val_loss']:.4f}; child step 0 {step0:.4f}, "
          f"end {done_b['val_loss']:.4f}")
    assert abs(step0 - done_a["val_loss"]) < 1e-4
    assert abs(done_b["val_loss_base"] - done_a["val_loss"]) < 1e-4


def test_an_adapter_of_another_rank_is_refused(tiny_models, small_dataset, tmp_path):
    model = tiny_models[("llama", "f32")]
    parent = str(tmp_path / "a.gguf")
    p, _ = run_cli(*train_args(model, small_dataset, str(tmp_path / "a"), parent, "--steps", "1", *ARGS))
    assert p.returncode == 0, p.stderr
    args = train_args(model, small_dataset, str(tmp_path / "b"), str(tmp_path / "b.gguf"), "--steps", "1",
                      "--init-adapter", parent, *ARGS)
    args[args.index("--rank") + 1] = "8"
    p, events = run_cli(*args)
    assert p.returncode != 0
    err = events[-1]
    assert err["event"] == "error" and err["code"] == "bad_args", err
    assert "rank 4 (this run: --rank 8)" in err["message"], err["message"]


def test_an_adapter_of_other_targets_is_refused(tiny_models, small_dataset, tmp_path):
    model = tiny_models[("llama", "f32")]
    parent = str(tmp_path / "a.gguf")
    p, _ = run_cli(*train_args(model, small_dataset, str(tmp_path / "a"), parent, "--steps", "1", "--targets", "q,v",
                               *ARGS))
    assert p.returncode == 0, p.stderr
    p, events = run_cli(*train_args(model, small_dataset, str(tmp_path / "b"), str(tmp_path / "b.gguf"), "--steps",
                                    "1", "--init-adapter", parent, *ARGS))
    assert p.returncode != 0
    err = events[-1]
    assert err["code"] == "bad_args" and "does not adapt" in err["message"], err
