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
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="pack, verify and unpack bundles to share (zip with checksums)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    pack = actions.add_parser("pack", help="zip a bundle folder with checksums and a manifest")
    pack.add_argument("bundle", metavar="BUNDLE_DIR", help="bundle folder (with configs/metadata.json)")
    pack.add_argument("--out", required=True, metavar="FILE.zip", help="zip file to write (replaced atomically)")
    pack.add_argument("--export-torchscript", action="store_true",
                      help="add models/model_<name>.ts (torch.jit.script) for each models/model_<name>.pt "
                           "that has none; the bundle folder is not modified")
    pack.set_defaults(func=run_pack)

    verify = actions.add_parser("verify", help="verify a bundle zip or folder; exit 1 on any failed check")
    verify.add_argument("path", metavar="FILE_OR_DIR", help="bundle zip or bundle folder")
    verify.add_argument("--n", type=int, default=2,
                        help="value of n in the metadata's '16*n' input shapes for the in/out check "
                             "(default: %(default)s; instance norm needs n >= 2)")
    verify.add_argument("--atol", type=float, default=1e-4,
                        help="largest TorchScript vs PyTorch difference (default: %(default)g)")
    verify.set_defaults(func=run_verify)

    unpack = actions.add_parser("unpack", help="extract a bundle zip safely and check its checksums")
    unpack.add_argument("zip", metavar="FILE.zip", help="bundle zip")
    unpack.add_argument("--out", required=True, metavar="DIR",
                        help="bundle folder to create (must not exist or be empty)")
    unpack.set_defaults(func=run_unpack)


def run_pack(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing import pack_bundle

    print(pack_bundle(args.bundle, args.out, export_torchscript=args.export_torchscript).summary())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing import verify_bundle

    report = verify_bundle(args.path, n=args.n, atol=args.atol)
    print(report.table())
    print(report.summary())
    return 0 if report.ok else 1


def run_unpack(args: argparse.Namespace) -> int:
    from pipeline.bundle_sharing import unpack_bundle

    result = unpack_bundle(args.zip, args.out)
    print(result.summary())
    return 0 if result.checksums is None or result.checksums.ok else 1
