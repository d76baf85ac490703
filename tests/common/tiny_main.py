"""Entry point of the test-only tiny task, for tests that need a real training subprocess.

python -m tests.common.tiny_main --config=tests/common/tiny_config.py --workdir=DIR
"""

from common import cli
from tests.common.tiny_task import TinyTask

if __name__ == "__main__":
    cli.run(TinyTask)
