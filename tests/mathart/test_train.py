"""The smoke profile through the real loop (`common.train.train_and_evaluate`) on a JSONL dataset
written here (drawn circles and lines with their formulas), with the sample-grid hook firing,
then the sample and evaluate tools on the run it leaves behind."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

from common.checkpoint import load_run
from common.evaluate import evaluate_run
from common.train import train_and_evaluate
from configs.mathart import get_config
from mathart import evaluate, generate, input_pipeline, sample
from mathart.dataset.jsonl import load_jsonl
from mathart.task import MathArtTask, tokenizer_from_meta

SIZE = 16


SOURCE_CAPTIONS = ("gold ring", "gold glow", "blue ring", "gold ring")


def _write_dataset(folder, slope_step: float = 0.25, captions=SOURCE_CAPTIONS) -> str:
    """40 (image, formula) pairs: circles of growing radius and lines of growing slope
    (`slope_step` apart, so another step gives formulas with other numbers); every tenth pair
    has a caption instead (``prompt``). Its words give two datasets other vocabularies even
    when numbers are spelled with digits (then every formula piece is in the base vocabulary)."""
    os.makedirs(folder / "img", exist_ok=True)
    lines = []
    for i in range(40):
        img = Image.new("RGB", (SIZE, SIZE), (10, 10, 30))
        draw = ImageDraw.Draw(img)
        if i % 2 == 0:
            r = 2 + (i // 2) % 6
            draw.ellipse((8 - r, 8 - r, 8 + r, 8 + r), outline=(250, 200, 40))
            formula = f"x^2 + y^2 = {r * r}"
        else:
            slope = slope_step * (1 + (i // 2) % 8)
            draw.line((0, 15, 15, 15 - 15 * slope), fill=(60, 220, 250))
            formula = f"y = {slope:g}*x"
        name = f"img/{i:03d}.png"
        img.save(folder / name)
        key = "image" if i % 3 else "image_path"  # both spellings are accepted
        if i % 10 == 9:
            lines.append(json.dumps({key: name, "prompt": captions[i // 10]}))
        else:
            lines.append(json.dumps({key: name, "formula": formula}))
    path = folder / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _smoke_config(root):
    """The smoke profile on the JSONL dataset written into ``root``."""
    config = get_config("smoke")
    config.data.source = "jsonl"
    config.data.train_jsonl = _write_dataset(root)
    config.data.val_fraction = 0.2  # 8 validation formulas
    config.data.image_size = SIZE
    config.loss.family_weight = 0.0  # JSONL data has no family labels
    return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One self-conditioned smoke run that every test here reads. Self-conditioned because it
    is the longer path (the coin-guarded first pass in the train step, two passes in the eval
    step, each sampler step's estimate fed back); the default path trains through the loop in
    the campaign smoke test (tests/common/test_without_tensorflow.py), and a second run here
    would cost most of a minute of compiling."""
    root = tmp_path_factory.mktemp("mathart_smoke")
    config = _smoke_config(root)
    config.diffusion.self_condition = True
    # Numbers as values (one <num> piece, Fourier features), so the hook, the CLIs and
    # `predict` below all carry them.
    config.data.number_tokens = "shared"
    config.model.number_features = 4
    workdir = str(root / "run")
    result = train_and_evaluate(MathArtTask, config, workdir)
    return config, result, workdir


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_smoke_run_trains_evaluates_and_writes_sample_grids(smoke_run):
    _, result, workdir = smoke_run
    assert result.status == "completed"
    rows = _metrics(workdir)
    keys = set().union(*rows)
    for key in ("train/loss", "train/mse", "train/perceptual_structural", "val/mse"):
        assert key in keys, f"{key} not logged; have {sorted(keys)}"
    # The hook fired at each epoch (sample.every_epochs = 1) and its scores were logged.
    assert {"samples/ssim", "samples/top1_ssim", "samples/harmony"} <= keys
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert all(np.isfinite(losses))
    run = load_run(workdir, which="latest")
    assert run.params["unet"]["conv_in"]["kernel"].shape[2] == 6  # x_t and the x0 estimate
    assert run.params["encoder"]["number_in"]["kernel"].shape == (2 * 4 + 2, 32)
    pngs = sorted(p for p in os.listdir(os.path.join(workdir, "images")) if p.startswith("samples"))
    assert len(pngs) == 2, pngs  # epochs 1 and 2
    grid = np.asarray(Image.open(os.path.join(workdir, "images", pngs[-1])))
    # 4 [generated | truth] pairs (sample.grid_formulas) in one row, enlarged 4x, 3 px gaps,
    # under a header line and each above its caption (mathart.generate.captioned_pairs).
    caption = generate.CAPTION_PX
    assert grid.shape == (caption + 3 + 4 * SIZE + caption + 3 + 3, 4 * (8 * SIZE + 3) + 3, 3)


def test_offline_evaluation_is_the_loops_evaluation(smoke_run):
    # mathart has no final_eval_splits: the best checkpoint's validation figures, as logged.
    _, result, workdir = smoke_run
    again = evaluate_run(workdir, which="best", splits=["val"])
    assert again["checkpoint_step"] == result.best_step
    logged = next(r for r in _metrics(workdir) if r["step"] == result.best_step and "val/mse" in r)
    val = {k: v for k, v in logged.items() if k.startswith("val/")}
    assert val and set(val) <= set(again)
    for key, value in val.items():
        assert again[key] == pytest.approx(value, rel=1e-5), key


def test_checkpoint_carries_the_tokenizer(smoke_run):
    config, _, workdir = smoke_run
    run = load_run(workdir, which="latest")
    tok = tokenizer_from_meta(run.meta)
    ids = tok.encode("x^2 + y^2 = 9", config.model.max_formula_tokens)
    assert ids[0] == 2 and (ids > 0).sum() > 5
    assert run.ema_params is not None


def test_evaluation_splits_are_the_runs_own_rows(smoke_run):
    # `mathart.evaluate --split train` must see the formulas the run trained on, and only those:
    # the file's first 32 rows (the last 8 are held out for validation).
    config, _, workdir = smoke_run
    tok = tokenizer_from_meta(load_run(workdir, which="latest").meta)
    rows = load_jsonl(config.data.train_jsonl, config.data.image_size)
    train = input_pipeline.load_eval_split(config, "train", tok)
    val = input_pipeline.load_eval_split(config, "val", tok)
    assert list(train.formulas) == list(rows["formula"][:32])
    assert list(val.formulas) == list(rows["formula"][32:])
    np.testing.assert_array_equal(
        train.arrays["tokens"][0],
        tok.encode(str(rows["formula"][0]), config.model.max_formula_tokens),
    )
    first = input_pipeline.load_eval_split(config, "train", tok, num=5)
    assert list(first.formulas) == list(rows["formula"][:5]) and len(first.arrays["image"]) == 5
    with pytest.raises(ValueError, match="has no 'test' split"):
        input_pipeline.load_eval_split(config, "test", tok)
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'"):
        input_pipeline.load_eval_split(config, "validation", tok)


def test_sample_cli_writes_a_grid(smoke_run, tmp_path):
    _, _, workdir = smoke_run
    out = str(tmp_path / "grid.png")
    code = sample.main(
        [
            "--workdir",
            workdir,
            "--formula",
            "x² + y² = 16",
            "--n",
            "3",
            "--out",
            out,
            "--scale",
            "1",
        ]
    )
    assert code == 0
    image = np.asarray(Image.open(out))
    # Reference renders on top, samples below: 2 rows x 3 columns of 16 px with 2 px gaps.
    assert image.shape == (2 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2, 3)


@pytest.mark.parametrize(
    "formula,reason",
    [
        ("r = sin(4*theta", "never closed"),
        ("__import__('os')", "underscore"),
        ("9**9**9**9", "exponent"),
    ],
)
def test_sample_cli_rejects_invalid_formulas(smoke_run, tmp_path, capsys, formula, reason):
    _, _, workdir = smoke_run
    out = tmp_path / "never.png"
    code = sample.main(["--workdir", workdir, "--formula", formula, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "invalid formula" in err and "position" in err and reason in err.lower()
    assert not out.exists()


def test_evaluate_cli_reports_measured_scores(smoke_run, tmp_path):
    _, _, workdir = smoke_run
    out = str(tmp_path / "eval.json")
    code = evaluate.main(
        ["--workdir", workdir, "--split", "val", "--num", "8", "--k", "4", "--out", out,
         "--diversity-formulas", "2", "--diversity-seeds", "2", "--batch", "8"]
    )  # fmt: skip
    assert code == 0
    with open(out) as f:
        result = json.load(f)
    assert result["k"] == 4 and result["chance"] == 0.25 and result["candidates"] == "images"
    for key in ("top1_ssim", "top1_geometry", "ssim", "harmony", "harmony_truth"):
        assert np.isfinite(result[key])
    assert 0.0 <= result["top1_ssim"] <= 1.0 and 0.0 <= result["harmony"] <= 10.0
    assert result["diversity_within_formula"] >= 0.0
    assert os.path.exists(out.replace(".json", "_grid.png"))


def test_evaluate_mean_only_on_a_run_without_a_regression_mean_is_one_line(smoke_run, capsys):
    _, _, workdir = smoke_run
    before = sorted(os.listdir(workdir))
    code = evaluate.main(["--workdir", workdir, "--split", "val", "--num", "2", "--mean-only"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("drop --mean-only") and "\n" not in err, err
    assert sorted(os.listdir(workdir)) == before  # nothing written into the run


def test_init_from_matches_token_embeddings_by_piece(smoke_run, tmp_path):
    """Fine-tuning on other data: the new run's tokenizer has other pieces in other rows, so
    `config.init_from` must carry each embedding row to its piece's new row (lr 0: the new run
    ends where it started)."""
    config, _, source_dir = smoke_run
    source = load_run(source_dir, which="best")
    config = config.copy_and_resolve_references()
    # Other word counts reorder the caption pieces; "cyan" is new.
    captions = ("blue ring", "blue cyan", "blue ring", "gold ring")
    config.data.train_jsonl = _write_dataset(tmp_path, slope_step=0.3, captions=captions)
    config.init_from = source_dir
    config.learning_rate = 0.0
    config.max_steps = 2
    config.sample.every_epochs = 0  # no sample grid: this test is about params
    workdir = str(tmp_path / "run")
    assert train_and_evaluate(MathArtTask, config, workdir).status == "completed"
    target = load_run(workdir, which="latest")
    old_vocab = tokenizer_from_meta(source.meta).vocab
    new_vocab = tokenizer_from_meta(target.meta).vocab
    moved = [p for p in new_vocab if p in old_vocab and new_vocab.index(p) != old_vocab.index(p)]
    assert moved, "the two datasets should give shifted vocabularies"
    assert any(p not in old_vocab for p in new_vocab)
    old_table = np.asarray(source.params["encoder"]["token_embed"]["embedding"])
    new_table = np.asarray(target.params["encoder"]["token_embed"]["embedding"])
    for i, piece in enumerate(new_vocab):
        if piece in old_vocab:
            np.testing.assert_array_equal(new_table[i], old_table[old_vocab.index(piece)])
    rest = {k: v for k, v in target.params.items() if k != "encoder"}
    jax.tree.map(np.testing.assert_array_equal, rest, {k: source.params[k] for k in rest})
    jax.tree.map(
        np.testing.assert_array_equal,
        target.params["encoder"]["layers"],
        source.params["encoder"]["layers"],
    )


def test_a_trained_run_is_usable_from_python(smoke_run):
    import common
    from mathart.input_pipeline import style_features

    config, _, workdir = smoke_run
    trained = common.load_run(workdir)
    tok = tokenizer_from_meta(trained.meta)
    texts, max_len = ["x^2 + y^2 = 9", "y = 0.5*x"], config.model.max_formula_tokens
    batch = {
        "tokens": tok.encode_batch(texts, max_len),
        "numbers": tok.numbers_batch(texts, max_len),
        "style": style_features(np.array([0, 1])),
    }
    first, again = trained.predict(batch, seed=3), trained.predict(batch, seed=3)
    assert first["image"].shape == (2, SIZE, SIZE, 3) and first["image"].dtype == np.uint8
    np.testing.assert_array_equal(first["image"], again["image"])  # seeded: reproducible
    # The run reads number values: its values, not only its ids, decide the image.
    other = dict(batch, numbers=tok.numbers_batch(["x^2 + y^2 = 4", "y = 3*x"], max_len))
    assert (tok.encode_batch(["x^2 + y^2 = 4", "y = 3*x"], max_len) == batch["tokens"]).all()
    assert not np.array_equal(trained.predict(other, seed=3)["image"], first["image"])
    with pytest.raises(ValueError, match="number_features"):
        trained.predict({k: v for k, v in batch.items() if k != "numbers"}, seed=3)


def test_sampling_a_run_whose_checkpoint_is_damaged_is_one_line(smoke_run, tmp_path, capsys):
    import shutil

    _, _, workdir = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    steps = sorted(int(d) for d in os.listdir(copy / "checkpoints") if d.isdigit())
    shutil.rmtree(copy / "checkpoints" / str(steps[-1]) / "state")
    out = tmp_path / "grid.png"
    for which in ("latest", str(steps[-1])):
        argv = [str(copy), "--which", which, "--formula", "y = 0.5*x", "--out", str(out)]
        if len(steps) > 1 and which == "latest":
            assert sample.main(argv) == 0  # the next older step, with a warning
            continue
        with pytest.raises(SystemExit) as e:
            sample.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and not any("Traceback" in line for line in err)
        assert err[-1].startswith("error: ") and f"step {steps[-1]}" in err[-1]
        assert "KeyError" in err[-1] or "cannot be read" in err[-1]
    assert not out.exists()


def test_two_stage_run_regression_mean_first_then_residual_diffusion(tmp_path):
    """Stage 1 (``model.regression_only``) trains the regression mean alone through the real
    loop: the loss is regression_weight x its MSE (+ the pooled levels' MSE + the weighted
    geometry and structural losses), the denoiser
    never runs (its params stay at their initialisation), the best checkpoint is picked by
    val/regression_mse, and the run's samples are the mean. Stage 2 starts the whole model
    from it with ``config.init_from``."""
    config = _smoke_config(tmp_path)
    config.model.regression, config.model.regression_only = True, True
    config.model.regression_channels = 8
    config.loss.regression_pyramid_levels = 2
    config.loss.regression_math_weight = 0.5
    config.loss.regression_structural_weight = 0.25
    config.max_steps, config.eval_every_steps, config.checkpoint_every_steps = 4, 2, 2
    stage1 = str(tmp_path / "stage1")
    result = train_and_evaluate(MathArtTask, config, stage1)
    assert result.status == "completed"
    rows = _metrics(stage1)
    keys = set().union(*rows)
    assert {"train/loss", "train/regression_mse", "train/regression_pyramid"} <= keys
    assert {"train/regression_math", "val/regression_math", "train/regression_structural"} <= keys
    assert "val/regression_mse" in keys
    assert not {"train/mse", "val/mse", "val/x0_mse"} & keys  # nothing the step did not run
    logged = [r for r in rows if "train/loss" in r]
    for r in logged:
        error = (
            r["train/regression_mse"]
            + r["train/regression_pyramid"]
            + 0.5 * r["train/regression_math"]
            + 0.25 * r["train/regression_structural"]
        )
        assert r["train/loss"] == pytest.approx(config.loss.regression_weight * error, rel=1e-6)
    best = min(
        (r for r in rows if "val/regression_mse" in r), key=lambda r: r["val/regression_mse"]
    )
    assert result.best_step == best["step"]
    first = load_run(stage1, which="2")
    trained = load_run(stage1, which="latest")
    jax.tree.map(np.testing.assert_array_equal, first.params["unet"], trained.params["unet"])
    changed = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), first.params["mean_unet"], trained.params["mean_unet"]
    )
    assert all(jax.tree.leaves(changed))

    out = str(tmp_path / "eval.json")
    args = ["--workdir", stage1, "--split", "val", "--num", "8", "--k", "4", "--out", out]
    assert evaluate.main([*args, "--diversity-formulas", "0"]) == 0
    with open(out) as f:
        assert json.load(f)["sampler"] == "the regression mean alone"

    # Stage 2 (--config.init_from=<stage 1> with model.regression): every parameter it needs
    # is in stage 1's checkpoint, with the same shape, so init_from carries all of them.
    # (Carrying through the loop is tested in test_init_from_matches_token_embeddings_by_piece.)
    config.model.regression_only = False
    stage2 = MathArtTask(config)
    fresh = jax.eval_shape(
        stage2.init_variables,
        jax.random.key(0),
        stage2.synthetic_batch(2, np.random.default_rng(0)),
    )["params"]
    shapes = lambda tree: jax.tree.map(lambda a: tuple(a.shape), tree)
    assert shapes(fresh) == shapes(trained.params)
