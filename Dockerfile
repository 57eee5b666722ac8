# The tfx-canary pipeline image: TFX's own image for the pinned release plus this package, and
# optionally a team's own project (its model package, schema and config; `tfx-canary init` makes one).
#
#   docker build -t us-central1-docker.pkg.dev/PROJECT/tfx-canary/pipeline:0.1.0 .
#   docker build --build-arg USER_PROJECT=projects/wine -t .../pipeline:wine-0.1.0 .   # your model
#   docker push  us-central1-docker.pkg.dev/PROJECT/tfx-canary/pipeline:0.1.0
#
# USER_PROJECT is the project's folder inside this build context (copy or clone it under the
# checkout); it lands at /user-project and its package is pip-installed, so the dotted
# preprocessing_fn / run_fn paths of its config import. `tfx-canary compile --config` maps the
# config's schema_file to the same place (kubeflow/compile.py).
#
# Vertex AI runs every pipeline step in this image (kubeflow/cloud.example.yaml `image`), so the
# components, run_fn and preprocessing_fn import from the installed package, never from __main__.
# The base image runs Python 3.10: the project's code stays 3.10-compatible (tests check it).
FROM gcr.io/tfx-oss-public/tfx:1.21.0

ARG USER_PROJECT=""

WORKDIR /tfx-canary
COPY . /tfx-canary

# TFX, TensorFlow and Beam are already in the base image at the pinned versions; pip only adds what
# is missing. Not editable, and the sources stay here for Beam's --setup_file=/tfx-canary/setup.py
# (Dataflow workers build and install the same package from it).
RUN python -m pip install --no-cache-dir /tfx-canary \
    && if [ -n "$USER_PROJECT" ]; then \
         cp -r "/tfx-canary/$USER_PROJECT" /user-project \
         && python -m pip install --no-cache-dir /user-project; \
       fi \
    && python -c "import tfx_canary, pipeline, components, models, scaffold, release, serving, rollout, observe, scheduler, kubeflow, fixtures" \
    && tfx-canary --help > /dev/null

# Keras 2 (tf_keras) in every step, as on the one-machine run, where tf.Transform's import asks for it
# before anything touches tf.keras: the Trainer's warm-start weights and the exported signatures then
# come from the same Keras whichever module a step's entrypoint imports first.
ENV PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_USE_LEGACY_KERAS=1
