# Runs a command on a pseudo-terminal and drives it like a person at a keyboard (for tests of
# interactive commands; Node has no pseudo-terminal of its own).
#   python3 keyboard.py STEPS COMMAND ARGS...
# STEPS is a JSON list, run in order: {"send": text} types text; {"expect": regex, "timeout": s}
# waits until the output (after what earlier steps matched) matches. Prints one JSON object:
# {"output", "seconds" (per step), "failed" (the step that timed out, or null), "status"}.
import json
import os
import pty
import re
import select
import sys
import time

steps = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])

output = b''
matched_to = 0
seconds = []
failed = None


def read_until(deadline):
    """Reads what the command wrote; False at the deadline or at end of output."""
    global output
    wait = deadline - time.monotonic()
    if wait <= 0 or not select.select([fd], [], [], wait)[0]:
        return False
    try:
        data = os.read(fd, 65536)
    except OSError:  # the command exited and closed the terminal
        return False
    output += data
    return len(data) > 0


for i, step in enumerate(steps):
    start = time.monotonic()
    if 'send' in step:
        os.write(fd, step['send'].encode())
    else:
        pattern = re.compile(step['expect'].encode())
        deadline = start + step.get('timeout', 30)
        while True:
            match = pattern.search(output, matched_to)
            if match:
                matched_to = match.end()
                break
            if not read_until(deadline):
                failed = i
                break
    seconds.append(time.monotonic() - start)
    if failed is not None:
        break

if failed is not None:
    os.kill(pid, 9)
deadline = time.monotonic() + 30
while read_until(deadline):
    pass
_, status = os.waitpid(pid, 0)
print(json.dumps({'output': output.decode('utf-8', 'replace'), 'seconds': seconds, 'failed': failed, 'status': os.waitstatus_to_exitcode(status)}))
