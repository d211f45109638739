from mmtune.cli import main
from tests.training.conftest import run_mmtune, write_config


def test_build_vlm_then_sft_from_the_command_line(tiny_parts, colour_chat, tmp_path, capsys):
    config = write_config({"train": {"epochs": 1, "batch_size": 4, "log_with": []}}, tmp_path / "c.yaml")
    assert main(["build-vlm", str(config), f"output_dir={tmp_path / 'built'}", "build.stage=0",
                 f"build.vision={tiny_parts['siglip']}", f"build.llm={tiny_parts['qwen2']}"]) == 0
    assert main(["sft", str(config), f"output_dir={tmp_path / 'sft'}", f"model.name={tmp_path / 'built' / 'model'}",
                 f"data.train={colour_chat['chat']}", f"data.train_images={colour_chat['images']}",
                 "train.time_budget=0.001"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "stopped (time_budget); continue with: mmtune sft" in printed and "--resume" in printed


def test_bad_input_is_one_line_and_exit_code_2(colour_chat, tmp_path):
    config = write_config({"dpo": {"beta": 0.1}}, tmp_path / "c.yaml")
    for argv in (["dpo", str(config), "dpo.betta=1"], ["sft", str(config)],
                 ["build-vlm", str(config), "build.stage=0"]):
        assert main(argv) == 2
    captured = run_mmtune("sft", config, f"data.train={tmp_path / 'none.jsonl'}", "model.name=x",
                          f"output_dir={tmp_path / 'run'}")
    assert captured.returncode == 2 and "Traceback" not in captured.stderr
    missing = tmp_path / "none.jsonl"
    assert captured.stderr.strip().splitlines() == [f"mmtune: error: data.train: file not found: {missing}"]
    assert not (tmp_path / "run").exists()  # bad data is found before the run folder is made
