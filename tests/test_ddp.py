import os
import subprocess
import sys
import textwrap

import pytest
from safetensors.torch import load_file

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from fundiff import training
    from helpers import synthetic_data, tiny_config
    if {text!r}:  # a text model with the emoji recipe's UNet and text draws, on 64 coloured 32x32 images
        from fundiff.text import TextEncoder
        x, y = synthetic_data(64, size=32)
        texts = [[f"thing {{k}}", f"shape {{k}}", "square"] for k in y.tolist()]
        names = [t[:1] for t in texts]
        enc = TextEncoder.build(texts, names)
        cfg = tiny_config("class", epochs=2, dataset="emoji", text="words+names", film=True, class_map=2,
                          name_share=0.6)
        data = (x[:, None].expand(-1, 3, -1, -1).contiguous(), torch.arange(64))
        text = (enc, enc.variant_table(texts, names))
        res = training.train(cfg, {run!r}, data=data, text=text, progress=False)
    else:
        res = training.train(tiny_config("class", epochs=2), {run!r}, data=synthetic_data(64), progress=False)
    rank = int(os.environ["RANK"])
    import json
    info = {{"rank": rank, "step": res.step, "world": int(os.environ["WORLD_SIZE"])}}
    json.dump(info, open({run!r} + f"/rank{{rank}}.json", "w"))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("text", [False, True], ids=["class", "text"])
def test_torchrun_two_cpu_processes_gloo(tmp_path, text):
    """The digits' class model, and a text model with FiLM, a class map and name draws (the emoji recipe)."""
    run = tmp_path / "run"
    run.mkdir()
    script = tmp_path / "ddp_train.py"
    tests_dir = os.path.dirname(__file__)
    script.write_text(SCRIPT.format(tests=tests_dir, run=str(run), text=text))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    infos = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 64 images, global batch 16 -> 8 per rank; each rank sees 32 images -> 4 steps per epoch, 2 epochs
    assert [i["step"] for i in infos] == [8, 8] and infos[0]["world"] == 2
    state = json.loads((run / "state.json").read_text())
    assert state["world"] == 2 and state["step"] == 8
    tensors = load_file(str(run / "state.safetensors"))
    assert "rng.noise.0" in tensors and "rng.noise.1" in tensors
    assert not (tensors["rng.noise.0"] == tensors["rng.noise.1"]).all()  # ranks draw different noise
