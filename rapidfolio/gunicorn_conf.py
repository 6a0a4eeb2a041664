"""gunicorn's settings that a command-line flag cannot carry (Procfile, docs/deploy.md:
`gunicorn rapidfolio.wsgi --config python:rapidfolio.gunicorn_conf ...`).

- Its own lines (starting, listening, a worker's timeout or death) are written as the app's
  are, in LOG_FORMAT through the one handler of rapidfolio.log_context, so the web process's
  output is one stream of one format. It has no access log: rapidfolio.request_log writes one
  line per request, with more in it.
- No control socket (gunicorn 25.1+ makes one at $XDG_RUNTIME_DIR/gunicorn.ctl or
  ~/.gunicorn/gunicorn.ctl): systemd or the platform manages the process, and every gunicorn
  of the same user would share that one path. `--control-socket PATH` brings it back.
- With PROMETHEUS_MULTIPROC_DIR set, a dead worker's metric files are marked so, as
  prometheus-client's multiprocess mode asks of gunicorn (rapidfolio/metrics.py).

The master process reads this without Django's settings: it must import no app.
"""

import os

from prometheus_client import multiprocess

from rapidfolio import log_context

logconfig_dict = log_context.logging_config(
    log_format=log_context.log_format(os.environ),
    level=os.environ.get("LOG_LEVEL", "INFO").upper(),
)

control_socket_disable = True


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
