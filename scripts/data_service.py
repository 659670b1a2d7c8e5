"""Start a tf.data service dispatcher or worker.

    python scripts/data_service.py dispatcher --port 5050
    python scripts/data_service.py worker --dispatcher 127.0.0.1:5050
    python scripts/train.py --shards '...' --data-service grpc://127.0.0.1:5050

Click parsing only: the servers are `petpipe.pipeline.service.start_dispatcher` and
`start_worker`.

The service has NO authentication, and TensorFlow's servers listen on every
network interface whatever address they advertise: run them only on a trusted
network, behind a firewall.
"""

from __future__ import annotations

import click

from petpipe import console

# TensorFlow's start-up chatter is not the user's business (started before importing it).
console.start_tensorflow()

from petpipe.pipeline import service  # noqa: E402

_WARNING = (
    "tf.data service has no authentication and listens on all interfaces: "
    "keep this port closed to untrusted networks."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
  """tf.data service servers for moving input preprocessing off the trainer."""


@main.command()
@click.option("--port", default=5050, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address clients and workers use to reach it.")
@click.option("--work-dir", default=None, help="Keep dispatcher state here (fault tolerance across restarts).")
@click.option("--worker-timeout", default=service.WORKER_TIMEOUT_SECONDS, show_default=True,
              metavar="SECONDS", type=click.FloatRange(min=0, min_open=True),
              help="A worker silent this long is lost (logged; trainers end its epochs).")
def dispatcher(port: int, host: str, work_dir: str | None, worker_timeout: float) -> None:
  server = service.start_dispatcher(port, work_dir, worker_timeout)
  bound = server.target.rsplit(":", 1)[1]
  click.echo(_WARNING, err=True)
  click.echo(f"dispatcher listening on grpc://{host}:{bound}", err=True)
  server.join()


@main.command()
@click.option("--dispatcher", "dispatcher_address", required=True, help="HOST:PORT of the dispatcher.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the dispatcher and clients use to reach it.")
@click.option("--heartbeat", default=service.HEARTBEAT_SECONDS, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds between heartbeats to the dispatcher (below its --worker-timeout).")
def worker(dispatcher_address: str, port: int, host: str, heartbeat: float) -> None:
  server = service.start_worker(dispatcher_address, port, host, heartbeat)
  click.echo(_WARNING, err=True)
  click.echo(f"worker registered with {dispatcher_address.split('://', 1)[-1]}", err=True)
  server.join()


if __name__ == "__main__":
  main()
