"""Tool rounds measured inside one process: chatcli's own CPU for a round of the tool loop
against that of a plain turn, and for a tool whose output is large.

`python -m benchmarks.rounds KIND COUNT BASE_URL` runs COUNT turns of KIND through the real
client, chat loop and recorder (a database in a temporary directory) against the benchmark's
server, after one turn to warm up, and prints one JSON line: the CPU and wall time of one
request (a plain turn is one request; a tool turn is a request for each round and one for the
answer), and the peak RSS. The tools are in-process functions, so the CPU is chatcli's own,
not a program's it ran.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# What the benchmark's server answers to each question (workload.serve), and how many requests
# a turn of it makes.
KINDS = {"plain": ("Paris?", 1), "tools": ("tools3", 4), "out1m": ("out1m", 2), "out4m": ("out4m", 2)}
OUTPUT = {"out1m": 1_000_000, "out4m": 4_000_000}


def main() -> None:
    from chatcli.chat import run_turn
    from chatcli.client import OpenAIClient
    from chatcli.config import endpoint_of, merge
    from chatcli.conversation import Conversation
    from chatcli.recorder import Recorder
    from chatcli.render import NullSink
    from chatcli.store import Store
    from chatcli.tools import Context, Tool
    from chatcli.tools.box import ToolBox

    kind, count, base_url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    question, requests = KINDS[kind]
    settings = merge({"base_url": base_url, "model": "test-model", "max_retries": 0}, {}, {})
    client = OpenAIClient(endpoint_of(settings, "sk-bench"))
    line = "a line of tool output, as a build log or a listing has them\n"
    size = OUTPUT.get(kind, 200)
    output = (line * (size // len(line) + 1))[:size]
    schema = {"type": "object", "properties": {}}
    tools = ToolBox([Tool("lookup", "look something up", schema, lambda args, ctx: output, "read")],
                    pre_approved=["lookup"], context=Context(cwd=Path.cwd()))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "chatcli.db")

        def turn() -> None:
            conversation = Conversation()
            recorder = Recorder(store, None, meta=lambda: {}, messages=lambda: conversation.messages)
            run_turn(conversation, question, client=client, settings=settings, sink=NullSink(),
                     journal=recorder, tools=tools)

        turn()  # warm-up: imports, the connection
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            turn()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu": cpu / (count * requests), "wall": wall / (count * requests), "rss_mb": rss}))


if __name__ == "__main__":
    main()
