"""launch/: the TPU VM and SLURM scripts (dry run, shellcheck) and the Colab
notebook, executed headless on CPU with the smoke config."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch'
SCRIPTS = ['tpu_vm.sh', 'slurm_gpu.sbatch']


def _shellcheck():
  found = shutil.which('shellcheck') or shutil.which(
      'shellcheck', path=os.path.dirname(sys.executable))
  assert found, 'shellcheck is missing: pip install -e ".[test]"'
  return found


@pytest.mark.parametrize('script', SCRIPTS)
def test_shellcheck(script):
  out = subprocess.run([_shellcheck(), str(LAUNCH / script)],
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stdout + out.stderr


def _run(args, env=None):
  return subprocess.run(['bash', *args], capture_output=True, text=True,
                        check=False, env=dict(os.environ, **(env or {})),
                        cwd=ROOT)


def test_tpu_vm_dry_run():
  out = _run([str(LAUNCH / 'tpu_vm.sh'), '--dry-run', '--name=hj',
              '--zone=us-central2-b', '--type=v4-32',
              '--repo=https://example.org/hashjax.git', '--',
              '--config=configs/dgssh.py', '--config.bits=32'])
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert len(lines) == 3 and all(l.startswith('+ gcloud compute tpus tpu-vm')
                                 for l in lines)
  assert 'create hj --zone=us-central2-b --accelerator-type=v4-32' in lines[0]
  assert '--worker=all' in lines[1] and 'pip\\ install' in lines[1]
  assert 'https://example.org/hashjax.git' in lines[1]
  assert '--worker=all' in lines[2]
  assert ('python3\\ -m\\ hashjax.main\\ --config=configs/dgssh.py\\ '
          '--config.bits=32') in lines[2]
  skip = _run([str(LAUNCH / 'tpu_vm.sh'), '--dry-run', '--skip-create',
               '--name=hj', '--zone=z', '--repo=r', '--', '--config=c.py'])
  assert len(skip.stdout.splitlines()) == 2
  bad = _run([str(LAUNCH / 'tpu_vm.sh'), '--dry-run', '--name=hj'])
  assert bad.returncode == 2 and 'usage' in bad.stderr


def test_slurm_dry_run():
  out = _run([str(LAUNCH / 'slurm_gpu.sbatch'), '--config=configs/ahcl.py',
              '--workdir=/shared/run 1'], env={'DRY_RUN': '1', 'VENV': '/v'})
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == (
      '+ srun --kill-on-bad-exit=1 /v/bin/python -m hashjax.main '
      '--config=configs/ahcl.py --workdir=/shared/run\\ 1')
  script = (LAUNCH / 'slurm_gpu.sbatch').read_text()
  assert '#SBATCH --ntasks-per-node=1' in script
  no_job = _run([str(LAUNCH / 'slurm_gpu.sbatch')],
                env={'DRY_RUN': '0', 'SLURM_JOB_ID': ''})
  assert no_job.returncode == 2 and 'sbatch' in no_job.stderr


@pytest.mark.slow
def test_colab_notebook_runs_headless(tmp_path):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  nb = nbformat.read(LAUNCH / 'colab_tpu.ipynb', as_version=4)
  workdir = tmp_path / 'run'
  os.environ.update(HASHJAX_NOTEBOOK_CONFIG='configs/ahcl.py:runlocal',
                    HASHJAX_NOTEBOOK_WORKDIR=str(workdir))
  try:
    nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(ROOT)}}
                            ).execute()
  finally:
    for k in ('HASHJAX_NOTEBOOK_CONFIG', 'HASHJAX_NOTEBOOK_WORKDIR'):
      os.environ.pop(k)
  assert (workdir / 'results.json').exists()
  texts = [o.get('text', '') + str(o.get('data', {}).get('text/plain', ''))
           for c in nb.cells if c.cell_type == 'code'
           for o in c.get('outputs', [])]
  assert any('mAP@all' in t for t in texts)
  images = [o for c in nb.cells if c.cell_type == 'code'
            for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
  assert len(images) == 1      # the PR curve
