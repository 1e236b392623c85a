"""``python -m e5_integrations.testing build-tiny DIR``: build the offline test model."""

from __future__ import annotations

import argparse
import sys

from e5_integrations.testing._tiny import TinyModelSpec, build_tiny_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e5_integrations.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-tiny", help="write a tiny random Mistral embedder with the real tokenizer")
    build.add_argument("directory")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--hidden-size", type=int, default=TinyModelSpec.hidden_size)
    build.add_argument("--layers", type=int, default=TinyModelSpec.num_hidden_layers)
    build.add_argument(
        "--tokenizer-model", default=None, help="SentencePiece model (default: mistral-common's)"
    )
    build.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    spec = TinyModelSpec(
        hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size,
        num_hidden_layers=args.layers,
        seed=args.seed,
    )
    out = build_tiny_model(
        args.directory, spec, tokenizer_model=args.tokenizer_model, overwrite=args.overwrite
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
