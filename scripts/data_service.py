"""Start a tf.data service dispatcher or worker.

    python scripts/data_service.py dispatcher --port 5050
    python scripts/data_service.py worker --dispatcher 127.0.0.1:5050
    python scripts/train.py --shards '...' --data-service grpc://127.0.0.1:5050

The service has NO authentication, and TensorFlow's servers listen on every
network interface whatever address they advertise: run them only on a trusted
network, behind a firewall.
"""

from __future__ import annotations

import click

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
def dispatcher(port: int, host: str, work_dir: str | None) -> None:
  import tensorflow as tf

  config = tf.data.experimental.service.DispatcherConfig(
      port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None
  )
  server = tf.data.experimental.service.DispatchServer(config)
  bound = server.target.rsplit(":", 1)[1]
  click.echo(_WARNING, err=True)
  click.echo(f"dispatcher listening on grpc://{host}:{bound}", err=True)
  server.join()


@main.command()
@click.option("--dispatcher", "dispatcher_address", required=True, help="HOST:PORT of the dispatcher.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the dispatcher and clients use to reach it.")
def worker(dispatcher_address: str, port: int, host: str) -> None:
  import tensorflow as tf

  address = dispatcher_address.split("://", 1)[-1]
  config = tf.data.experimental.service.WorkerConfig(
      dispatcher_address=address, worker_address=f"{host}:%port%", port=port
  )
  server = tf.data.experimental.service.WorkerServer(config)
  click.echo(_WARNING, err=True)
  click.echo(f"worker registered with {address}", err=True)
  server.join()


if __name__ == "__main__":
  main()
