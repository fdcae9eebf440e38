"""``dmg bundle``: share a trained bundle with another site.

  pack BUNDLE_DIR --out FILE.zip [--export-torchscript]
      zip the bundle (configs, docs, LICENSE, models/ weights and TorchScript exports) with a checksum
      manifest (checksums.sha256) and bundle_manifest.json; runs/, eval/, predictions/, caches, *.tmp and
      hidden files are left out. --export-torchscript adds models/model_<name>.ts for each .pt without one.
  verify FILE_OR_DIR
      check checksums, metadata (required keys, versions), each model's network_def with its weights
      (verify_net_in_out), and that each TorchScript model loads and agrees with the PyTorch one.
      Prints a table of PASS/FAIL/WARN/NOTE; exit code 1 on any FAIL.
  unpack FILE.zip --out DIR
      extract into DIR (the bundle folder; must not exist or be empty), refusing members that would land
      outside it (absolute paths, '..', symbolic links, duplicates) before writing anything; then check
      the checksums (exit code 1 on a mismatch).
  ship BUNDLE_DIR [--checkpoint CKPT [--checkpoint CKPT ...] [--name NAME]]
      regenerate what derives from the weights and this package: carried code in scripts/, configs in the
      zoo's JSON format, models/model_<name>.ts and .onnx, models/model.pt/.ts (re-run after new weights).
      --checkpoint first writes the network weights of CKPT (a state dict or a training checkpoint) as
      models/model_<NAME>.pt (NAME: the config's sequence by default), after checking that they load into
      network_def and that it passes verify_net_in_out with the Model Zoo's defaults; fixed spatial shapes in
      metadata.json follow the config's spatial_size. Several --checkpoint are the members of an ensemble
      (e.g. the cross-validation fold models, in fold order); the config's ensemble_size must equal their number.
  keygen --out NAME
      write an Ed25519 key pair NAME.key (private, mode 0600) and NAME.pub for pack --sign / verify --trusted-key.

Received bundles are untrusted: verify, segment and demo refuse config expressions outside the allow-list
(pipeline/bundle_trust/config_allowlist.py) before instantiating anything; archives are refused beyond
--max-size / --max-files / --max-ratio before anything is written.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="pack, sign, verify, unpack and ship bundles to share",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    pack = actions.add_parser("pack", help="zip a bundle folder with checksums and a manifest")
    pack.add_argument("bundle", metavar="BUNDLE_DIR", help="bundle folder (with configs/metadata.json)")
    pack.add_argument("--out", required=True, metavar="FILE.zip", help="zip file to write (replaced atomically)")
    pack.add_argument("--export-torchscript", action="store_true",
                      help="add models/model_<name>.ts (torch.jit.script) for each models/model_<name>.pt "
                           "that has none; the bundle folder is not modified")
    pack.add_argument("--sign", metavar="KEY", help="Ed25519 private key (dmg bundle keygen) to sign checksums.sha256")
    pack.set_defaults(func=run_pack)

    verify = actions.add_parser("verify", help="verify a bundle zip or folder; exit 1 on any failed check")
    verify.add_argument("path", metavar="FILE_OR_DIR", help="bundle zip or bundle folder")
    verify.add_argument("--n", type=int, default=2,
                        help="value of n in the metadata's '16*n' input shapes for the in/out check "
                             "(default: %(default)s; the MONAI Model Zoo checks n=1)")
    verify.add_argument("--atol", type=float, default=1e-4,
                        help="largest TorchScript vs PyTorch difference (default: %(default)g)")
    verify.add_argument("--trusted-key", dest="trusted_keys", metavar="PUB", action="append", default=[],
                        help="Ed25519 public key whose signature is required (repeatable: any one of them)")
    _add_limits(verify)
    verify.set_defaults(func=run_verify)

    unpack = actions.add_parser("unpack", help="extract a bundle zip safely and check its checksums")
    unpack.add_argument("zip", metavar="FILE.zip", help="bundle zip")
    unpack.add_argument("--out", required=True, metavar="DIR",
                        help="bundle folder to create (must not exist or be empty)")
    _add_limits(unpack)
    unpack.set_defaults(func=run_unpack)

    ship = actions.add_parser("ship", help="regenerate carried code, TorchScript/ONNX exports and models/model.pt")
    ship.add_argument("bundle", metavar="BUNDLE_DIR", help="bundle folder to update in place")
    ship.add_argument("--checkpoint", metavar="CKPT", action="append",
                      help="trained weights (state dict or training checkpoint) to install as models/model_<NAME>.pt; "
                           "repeat for the members of an ensemble (ensemble_size in inference.json)")
    ship.add_argument("--name", help="model name of --checkpoint (default: the inference config's sequence)")
    ship.set_defaults(func=run_ship)

    keygen = actions.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("--out", required=True, metavar="NAME", help="writes NAME.key (private) and NAME.pub")
    keygen.set_defaults(func=run_keygen)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    from pipeline.bundle_sharing.archive import ArchiveLimits

    d = ArchiveLimits()
    parser.add_argument("--max-size", type=float, default=d.max_total_bytes / 1e6, metavar="MB",
                        help="largest total uncompressed size of the zip (default: %(default).0f MB)")
    parser.add_argument("--max-files", type=int, default=d.max_members, help="most members (default: %(default)s)")
    parser.add_argument("--max-ratio", type=float, default=d.max_ratio,
                        help="largest compression ratio of a member over 1 MB (default: %(default)g)")


def _limits(args: argparse.Namespace):
    from pipeline.bundle_sharing.archive import ArchiveLimits

    return ArchiveLimits(max_total_bytes=int(args.max_size * 1e6), max_members=args.max_files, max_ratio=args.max_ratio)


def run_pack(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing import pack_bundle

    from pipeline.bundle_sharing.signing import load_private_key

    key = load_private_key(args.sign) if args.sign else None
    print(pack_bundle(args.bundle, args.out, export_torchscript=args.export_torchscript, sign_key=key).summary())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing import verify_bundle

    from pipeline.bundle_sharing.signing import load_public_key

    keys = [load_public_key(path) for path in args.trusted_keys]
    report = verify_bundle(args.path, n=args.n, atol=args.atol, trusted_keys=keys, limits=_limits(args))
    print(report.table())
    print(report.summary())
    return 0 if report.ok else 1


def run_unpack(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing import unpack_bundle

    result = unpack_bundle(args.zip, args.out, limits=_limits(args))
    print(result.summary())
    return 0 if result.checksums is None or result.checksums.ok else 1


def run_ship(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing.ship import ship_bundle
    from pipeline.bundle_sharing.ship_checkpoint import ship_checkpoint

    if args.name and not args.checkpoint:
        raise ValueError("--name names the model of --checkpoint; give --checkpoint too")
    result = ship_checkpoint(args.bundle, args.checkpoint, args.name) if args.checkpoint else ship_bundle(args.bundle)
    print(result.summary())
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing.signing import generate_keypair, key_id, load_public_key

    private, public = generate_keypair(args.out)
    print(f"key {key_id(load_public_key(public))}: private {private} (keep it secret), public {public} "
          "(give it to recipients: dmg bundle verify --trusted-key)")
    return 0
