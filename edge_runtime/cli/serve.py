"""`edge-infer serve MODEL`: classify images posted over HTTP (see `edge_runtime.serve`)."""

from __future__ import annotations

import signal
import threading

import click

from ..errors import EdgeError
from ..serve.server import ServeConfig
from .kit import Fatal, backend_option, config_default

ENV_TOKEN = "EDGE_SERVE_TOKEN"


@click.command(
    epilog=f"""\b
Examples:
  edge-infer serve model.tflite                       http://127.0.0.1:8080
  curl --data-binary @photo.jpg http://127.0.0.1:8080/classify
  curl http://127.0.0.1:8080/info
  {ENV_TOKEN}=s3cret edge-infer serve model.tflite --host 0.0.0.0
  curl -H "Authorization: Bearer s3cret" --data-binary @photo.jpg http://pi.local:8080/classify
\b
POST /classify answers with the JSON `edge-infer --json` prints; GET /info, /health (no token
needed), /metrics (Prometheus). SIGTERM or Ctrl-C: requests in flight finish, then it exits."""
)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--host",
    default=config_default(ServeConfig, "host"),
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; then set a token).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=config_default(ServeConfig, "port"),
    show_default=True,
    help="Port (0: any free one, printed).",
)
@click.option(
    "--token",
    envvar=ENV_TOKEN,
    help=f"Require 'Authorization: Bearer TOKEN' [default: ${ENV_TOKEN}, else none]. "
    "Prefer the variable: a command line is visible to other users.",
)
@click.option(
    "--max-mb",
    type=click.FloatRange(0.001),
    default=config_default(ServeConfig, "max_bytes") / (1 << 20),
    show_default=True,
    help="Largest request body in MiB (413 beyond).",
)
@click.option(
    "--pool",
    type=click.IntRange(1, 64),
    default=config_default(ServeConfig, "pool"),
    help="Interpreters answering in parallel (1: one behind a lock) [default: 2 where this "
    "process may use 2 cores or more, else 1].",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Threads of each interpreter.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="One threshold for every label (replaces the embedded ones).",
)
@click.option("--no-draft", is_flag=True, help="Always decode JPEGs at full scale.")
@backend_option
def serve(model, host, port, token, max_mb, pool, threads, threshold, no_draft, backend) -> None:
    """Serve MODEL over HTTP: POST an image to /classify, get its scores and labels."""
    try:
        config = ServeConfig(
            host=host,
            port=port,
            max_bytes=int(max_mb * (1 << 20)),
            pool=pool,
            threads=threads,
            threshold=threshold,
            draft=not no_draft,
            backend=backend,
            token=token or None,
        )
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    run_serve(model, config)


def run_serve(model: str, config: ServeConfig) -> None:
    """Serve until SIGTERM or Ctrl-C; then let the requests in flight finish."""
    from ..serve.server import App

    try:
        app = App(model, config, log=lambda message: click.echo(message, err=True))
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    stopper: list[threading.Thread] = []

    def stop(signum=None, frame=None) -> None:
        if not stopper:
            # shutdown() waits for serve_forever to return: never from its own thread.
            stopper.append(threading.Thread(target=app.stop, name="serve-stop"))
            stopper[0].start()

    previous = signal.signal(signal.SIGTERM, stop)
    click.echo(
        f"serving {model} on {app.url} (pool of {config.pool}, "
        f"{'bearer token required' if config.token else 'no token'}); "
        "POST images to /classify; Ctrl-C or SIGTERM to stop",
        err=True,
    )
    try:
        try:
            app.serve_forever()
        except KeyboardInterrupt:
            stop()
        for thread in stopper:
            thread.join()  # requests in flight answered, connections closed
    finally:
        if not stopper:  # once stopping, a second SIGTERM must not kill the exit half-way
            signal.signal(signal.SIGTERM, previous)
    snap = app.metrics.snapshot()
    click.echo(f"stopped: {sum(snap.requests.values())} requests answered", err=True)
