"""Stand-in tool whose worker grows by 64 MiB shortly after the import (for the recycling
test); its jobs do nothing."""

import threading
import time

HELD = []


def _grow():
    time.sleep(0.3)
    HELD.append(b"\x01" * (64 * 1024 * 1024))  # written, so every page is resident


threading.Thread(target=_grow, daemon=True).start()


def main():
    return 0
