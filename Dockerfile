# The KTRDR app image: backend, workers and the e2e test runner (one image, different commands).
# BASE_IMAGE: python:3.12-slim upstream, ktrdr-offline/python-base:bookworm offline.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies in a layer that depends only on pyproject.toml: a stub package stands in for the
# source, and is removed again so that /app/ktrdr (copied below, or bind-mounted for hot reload)
# is the only ktrdr on the path.
# (README.md is only pyproject's `readme`: an empty one keeps doc edits from reinstalling deps.)
COPY pyproject.toml ./
RUN mkdir ktrdr && touch ktrdr/__init__.py README.md \
 && pip install '.[server]' 'pytest>=8.0' 'pytest-timeout>=2.3' \
 && rm -rf ktrdr build ./*.egg-info README.md \
 && cd / && python -c "import ktrdr, shutil, os; shutil.rmtree(os.path.dirname(ktrdr.__file__))"

ENV PYTHONPATH=/app
COPY ktrdr ./ktrdr
COPY tests ./tests

EXPOSE 8000
CMD ["uvicorn", "ktrdr.api.app:app", "--host", "0.0.0.0", "--port", "8000"]
