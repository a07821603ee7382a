"""Imports torch / torchvision / timm for parity tests, or skips the test.

The pinned torchvision 0.28.0 wheel is a CUDA build next to a CPU torch: its
C++ ops are missing, and importing it fails on the ``nms`` fake
registration. Defining the two op schemas first (docs/history.md, "Development environment notes") lets
``import torchvision`` and ``import timm`` succeed; no test calls these ops.
"""
import pytest

# Keeps the torchvision op library alive for the whole session.
_TORCHVISION_SHIM = []


def import_torch():
  torch = pytest.importorskip(
      'torch', reason='torch not installed: parity tests skipped')
  if not _TORCHVISION_SHIM:
    try:
      lib = torch.library.Library('torchvision', 'DEF')
      lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) '
                 '-> Tensor')
      lib.define('qnms(Tensor qdets, Tensor qscores, float iou_threshold) '
                 '-> Tensor')
      _TORCHVISION_SHIM.append(lib)
    except RuntimeError:
      pass  # Already defined (e.g. a working torchvision).
  return torch


def import_timm():
  torch = import_torch()
  timm = pytest.importorskip(
      'timm', reason='timm not installed: parity tests skipped')
  return torch, timm


def import_torchvision():
  torch = import_torch()
  torchvision = pytest.importorskip(
      'torchvision', reason='torchvision not installed: parity tests skipped')
  return torch, torchvision
