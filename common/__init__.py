"""The shared training loop and its tools; see README.md, "The shared loop".

``common.load_run(run_dir)`` loads a trained run of any family for use from Python
(`common.evaluate.load_trained`); it is imported on first use, so that ``import common.cli``
stays free of jax.
"""


def __getattr__(name: str):
    if name == "load_run":
        from common.evaluate import load_trained

        return load_trained
    raise AttributeError(f"module 'common' has no attribute '{name}'")
