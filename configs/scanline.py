"""STM scan-line tip-state classification (seed 002, issue 5): ViT, causal sequential, LRCN.

    python -m scanline.main --config=configs/scanline.py:vit_baseline
    python -m scanline.main --config=configs/scanline.py:sequential --workdir=runs/seq
    python -m scanline.main --config=configs/scanline.py:lrcn --config.data.path=my_scans.npz
    python -m scanline.sweep --config=configs/scanline.py:vit_baseline \
        --grid optim.weight_decay=0,0.01,0.05,0.1 --grid model.dropout=0.1,0.15,0.2

Without --workdir a run goes to checkpoints/YYYYMMDD_HHMMSS (+ _j$SLURM_JOB_ID), as in the seed.
Without config.data.path the data is the synthetic H:Si(100) set (`scanline.synth`): synth.n
images from synth.seed (split 70/15 into train/val by source image) and a held-out test file of
synth.test_n images from synth.test_seed, generated once into config.data_dir.

Profiles:
  vit_baseline    the seed's "Run 1": ScanLineEncoder, Linear tokenizer, 6 layers, d_model 256
                  (model.embedding_dim), 8 heads, FFN 1024 (model.mlp_size), dropout 0.1,
                  lr 1e-4 with linear warmup 1e-6 -> 1e-4 over 5 epochs, AdamW weight decay 0
                  (the seed's sweep winner), batch 32, 50 epochs, inverse-frequency class weights
                  ([2.845, 0.569, 1.478, 0.823] on the original's counts), early stopping on
                  val loss with patience 10.
  sequential      causal Transformer, CNN tokenizer per line, progressive read-out at every line,
                  same sizes and training recipe.
  lrcn            Gordon et al. 2020: 20-line windows rolled one line at a time through their
                  2-D CNN (32/64/128 filters), LSTM with 256 units; same training recipe.
  vit_cpu, sequential_cpu, lrcn_cpu
                  the same models shrunk for the 2-core CPU budget of the README's figures
                  (d 64, 4 layers; narrow strided CNNs; lr 1e-3 after a 1-epoch warmup; about
                  30 minutes each on the default synthetic set).
  lrcn_full_cpu   the LRCN code path with one window over the whole scan (Gordon et al.'s full-image
                  CNN, 16/32/64 filters, a one-step LSTM(128) head) on 60,000 synthetic
                  images, cosine decay over 8 epochs (about 70 minutes including 10 minutes
                  of data generation): stage 1 of the README's best CPU model, whose later
                  stages continue it on fresh images (init_from + a new synth.seed; the
                  commands are in scanline/README.md, "Stages on fresh images").
  microscope      a group's own labelled scans (a few thousand, a few dozen sessions) with
                  whole sessions held out, fine-tuned from a synthetic lrcn_full_cpu run
                  (--config.init_from=RUN_DIR; the model is lrcn_full_cpu's), plane levelling,
                  a schedule sized for ~2,000 training scans (30 epochs, 3e-4, cosine, early
                  stopping after 6 epochs without a better val loss). Recipe and measured gain
                  over training from scratch: scanline/README.md, "Your own microscope".
  smoke           seconds on CPU (tests): 48-image synthetic set, a 2-layer d=32 model.

Seed numbers and where they went: d_model -> model.embedding_dim; layers -> model.num_layers;
heads -> model.num_heads; FFN dims -> model.mlp_size; dropout -> model.dropout; LR ->
learning_rate; warmup 1e-6 -> optim.warmup_init_lr, 5 epochs -> optim.warmup_epochs; weight
decay -> optim.weight_decay; batch size -> batch_size; epochs -> max_epochs; class weights ->
loss.class_weighting / loss.class_weights; augmentation -> augment.*.
"""

import ml_collections

from common.config import P, base_config, parse_profile

PROFILES = (
    "vit_baseline",
    "sequential",
    "lrcn",
    "vit_cpu",
    "sequential_cpu",
    "lrcn_cpu",
    "lrcn_full_cpu",
    "microscope",
    "smoke",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    profile = parse_profile(
        arg, choices=PROFILES, default="vit_baseline", config_file="configs/scanline.py"
    )
    c = base_config()
    c.task = "scanline.task:ScanlineTask"
    c.profile = profile
    c.seed = 0

    # --- data: a file (NPZ / MATLAB v7.3) or, when path is empty, the synthetic generator
    c.data_dir = "~/.cache/jaxfam/scanline"  # synthetic datasets are cached here
    c.data = ml_collections.ConfigDict()
    c.data.path = ""  # .npz (images/labels/groups) or .mat/.h5 (x_raw/y); "" = synthetic
    c.data.test_path = ""  # optional held-out file: the whole file is the test split
    c.data.format = "auto"  # auto (a folder of scans, or by extension) | npz | mat
    c.data.labels_csv = ""  # a folder's labels: file,label[,session]; "" = <folder>/labels.csv
    # Instrument files (scanline/instruments.py): the channel to read, e.g. "Z", "Current";
    # "" = Z (Nanonis, MATRIX) or the first channel (Gwyddion); and the scan direction.
    c.data.channel = ""
    c.data.direction = "forward"  # forward | backward
    c.data.line_length = 128  # pixels per scan line
    c.data.lines_per_image = P(int)  # MATLAB files: lines per image; None = line_length
    c.data.class_names = ()  # optional; else the file's class_names or class_<k>
    c.data.line_label_rule = "error"  # MATLAB per-line labels that differ: error|first|majority
    # Levelling before normalisation, in order (scanline/levelling.py): plane, polyN, rows_mean,
    # rows_median, rows_polyN, e.g. ("plane", "rows_median") for raw instrument files.
    c.data.levelling = ()
    c.data.normalize = "per_line"  # per-scan-line z-score (eps below) | none
    c.data.eps = 1e-8
    c.data.split = (0.7, 0.15, 0.15)  # train/val/test by source image (groups), stratified
    c.data.split_seed = 42  # the original's split seed
    # How groups (a source image, or a labelled session) are kept on one side of the split:
    # "stratified" splits each class's groups (every group must hold one label), "whole" keeps
    # each group whole even when it mixes classes (sessions: never test on a session you
    # trained on), "auto" = stratified when it can be, whole otherwise.
    c.data.group_split = "auto"
    c.data.test_groups = ()  # group ids held out as the test split (then split = train/val/rest)

    c.synth = ml_collections.ConfigDict()
    c.synth.n = 20000  # images in the training file (the original had 18,932)
    c.synth.seed = 0
    c.synth.test_n = 4000  # held-out test file from another seed; 0 = split test from synth.n
    c.synth.test_seed = 1
    c.synth.copies = 1  # images per source surface (pans + fresh noise), grouped in splits
    c.synth.shares = (0.0879, 0.4394, 0.1691, 0.3038)
    c.synth.workers = 2  # processes used when the cache must be generated

    # --- augmentation (train only, on device)
    c.augment = ml_collections.ConfigDict()
    c.augment.hflip_prob = 0.5
    c.augment.noise_std = 0.05  # in z-score units
    c.augment.line_dropout = 0.05  # probability a whole line is zeroed

    # --- loss
    c.loss = ml_collections.ConfigDict()
    c.loss.class_weighting = "inverse_frequency"  # from the training split | none
    c.loss.class_weights = ()  # explicit weights, one per class (overrides class_weighting)

    # --- model
    c.model = ml_collections.ConfigDict()
    c.model.name = "vit"  # vit | sequential | lrcn
    c.model.tokenizer = "linear"  # linear | cnn (vit, sequential)
    c.model.tokenizer_channels = (128, 256)  # CNN tokenizer hidden widths (Rust branch)
    c.model.tokenizer_stride = 1  # stride of the first tokenizer conv
    c.model.embedding_dim = 256  # d_model
    c.model.num_layers = 6
    c.model.num_heads = 8
    c.model.mlp_size = 1024
    c.model.dropout = 0.1
    c.model.attention_dropout = 0.1
    c.model.window = 0  # sequential: attend to the last W lines only; 0 = all previous lines
    c.model.progressive_weight = 0.0  # share of the loss on all read-outs (sequential, lrcn)
    c.model.progressive_from_line = 16  # read-outs that saw fewer lines stay out of that term
    c.model.lrcn_window = 20  # lines per LRCN window (Gordon et al.: W = 20); 0 = whole scan
    c.model.lrcn_stride = 1  # lines between windows (the paper rolls one line at a time)
    c.model.cnn_channels = (32, 64, 128)  # LRCN's 2-D CNN blocks
    c.model.lstm_size = 256

    # --- optimisation (seed Run 1)
    c.batch_size = 32
    c.eval_batch_size = 128
    c.max_epochs = 50.0
    c.learning_rate = 1e-4
    c.optim.name = "adamw"
    c.optim.weight_decay = 0.0
    c.optim.schedule = "warmup_linear"
    c.optim.warmup_epochs = 5.0
    c.optim.warmup_init_lr = 1e-6
    c.early_stopping.patience = 10
    c.early_stopping.metric = "val/loss"
    c.early_stopping.mode = "min"
    c.final_eval_splits = ("test",)
    c.log_every_steps = 100

    if profile == "sequential":
        c.model.name = "sequential"
        c.model.tokenizer = "cnn"
        c.model.progressive_weight = 0.5
    elif profile == "lrcn":
        c.model.name = "lrcn"
    elif profile in ("vit_cpu", "sequential_cpu", "lrcn_cpu", "lrcn_full_cpu"):
        _cpu_budget(c, profile)
    elif profile == "microscope":
        _microscope(c)
    elif profile == "smoke":
        c.synth.n, c.synth.test_n, c.synth.workers = 48, 16, 1
        c.data.split = (0.6, 0.2, 0.2)
        c.model.embedding_dim, c.model.num_layers, c.model.num_heads = 32, 2, 2
        c.model.mlp_size = 64
        c.model.tokenizer_channels, c.model.tokenizer_stride = (8, 16), 4
        c.model.cnn_channels, c.model.lstm_size, c.model.lrcn_stride = (4, 8, 8), 16, 27
        c.batch_size, c.eval_batch_size = 8, 16
        c.max_epochs, c.optim.warmup_epochs = 2.0, 1.0
        c.log_every_steps = 2
        c.compilation_cache_dir = ""
    return c


def _microscope(c: ml_collections.ConfigDict) -> None:
    """Fine-tuning on a small instrument set: lrcn_full_cpu's model (so its runs fit
    init_from) with a schedule for ~2,000 training scans.

    A lower peak rate than from scratch (3e-4 vs 1e-3: the pretrained features should move
    less), cosine decay over 30 epochs and early stopping on val loss, because a few dozen
    sessions overfit in a few epochs; sessions are kept whole by the split (a session's scans
    share tip, sample and day, so a random split would test on near-copies of training scans).
    """
    _cpu_budget(c, "lrcn_full_cpu")
    c.synth.n = 20000  # used only without data.path: lrcn_full_cpu's 60,000 are for pretraining
    c.data.levelling = ("plane",)
    c.data.group_split = "whole"
    c.learning_rate = 3e-4
    c.max_epochs = 30.0
    c.early_stopping.patience = 6
    c.log_every_steps = 50


def _cpu_budget(c: ml_collections.ConfigDict, profile: str) -> None:
    """Shrinks a profile to the README's 2-core CPU budget (about 30 minutes a model).

    Same data (the default synthetic set), loss, augmentation and schedule shape; narrower
    models, a 1-epoch warmup to 1e-3 (small models train faster at a higher rate) and fewer
    epochs, with early stopping on val loss after 5 epochs without improvement.
    """
    c.learning_rate = 1e-3
    c.optim.warmup_epochs = 1.0
    c.early_stopping.patience = 5
    if profile in ("vit_cpu", "sequential_cpu"):
        m = c.model
        m.embedding_dim, m.num_layers, m.num_heads, m.mlp_size = 64, 4, 4, 128
    if profile == "vit_cpu":
        c.model.name = "vit"
        c.max_epochs = 14.0
    elif profile == "sequential_cpu":
        c.model.name = "sequential"
        c.model.tokenizer = "cnn"
        c.model.tokenizer_channels, c.model.tokenizer_stride = (8, 16), 4
        c.model.progressive_weight = 0.5
        c.max_epochs = 8.0
    elif profile == "lrcn_cpu":
        c.model.name = "lrcn"
        c.model.cnn_channels, c.model.lstm_size, c.model.lrcn_stride = (8, 16, 32), 64, 8
        c.max_epochs = 18.0
    else:
        # One window of all lines: the CNN sees the whole frame once (Gordon et al.'s
        # full-image CNN, with the LSTM cell as a one-step gated head). 2.2x fewer CNN rows
        # per image than 14 overlapping 20-line windows, so twice the width fits the budget;
        # a cosine decay over the whole run instead of a constant rate (the constant-rate
        # LRCN was underfitting), and no early stopping, which would cut the schedule short.
        # On 20,000 images this model overfits after ~16 epochs; the generator is free, so it
        # gets 60,000 (8 epochs = 12,352 steps).
        c.model.name = "lrcn"
        c.model.lrcn_window = 0  # the whole scan, whatever its number of lines
        c.model.cnn_channels, c.model.lstm_size = (16, 32, 64), 128
        c.optim.schedule, c.optim.end_lr = "warmup_cosine", 1e-5
        c.early_stopping.patience = 0
        c.synth.n = 60_000
        c.max_epochs = 8.0
