"""``python -m diffusion_keras ...`` runs the command line (see ``diffusion_keras.cli``)."""

from diffusion_keras.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
