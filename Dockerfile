# syntax=docker/dockerfile:1
# sealgate milter image: build wheels in one stage, run from a slim one as a
# non-root user. `docker build -t sealgate .`; see deploy/docker-compose.yml.

# ---- build: compilers and headers for pymilter (libmilter) and python-pkcs11
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev libmilter-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY milter ./milter
RUN python -m venv /opt/sealgate \
 && /opt/sealgate/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/sealgate/bin/pip install --no-cache-dir . \
 && /opt/sealgate/bin/sealgate --help >/dev/null
# The verdict path (sealgate/native.txt) compiled with mypyc, as `make native` does,
# then put beside the installed sources; mypy itself stays in this stage.
RUN python -m venv /opt/mypyc \
 && /opt/mypyc/bin/pip install --no-cache-dir "mypy==2.4.1" setuptools \
 && cd /src/milter \
 && /opt/mypyc/bin/mypyc --python-executable /opt/sealgate/bin/python \
      $(grep -v '^#' sealgate/native.txt) >/tmp/mypyc.log \
 && site="$(/opt/sealgate/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && find sealgate -name '*.so' -exec cp --parents {} "$site/" \; && cp ./*__mypyc*.so "$site/" \
 && cd / && /opt/sealgate/bin/python -m sealgate.native

# ---- run: the virtualenv, the libmilter runtime, nothing else
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libmilter1.0.1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system sealgate \
 && useradd --system --gid sealgate --home-dir /var/lib/sealgate --shell /usr/sbin/nologin sealgate \
 && install -d -o sealgate -g sealgate -m 0700 /var/lib/sealgate \
 && install -d -o sealgate -g sealgate -m 0750 /var/spool/postfix/sealgate
COPY --from=build /opt/sealgate /opt/sealgate
COPY policies /usr/share/sealgate/policies
ENV PATH=/opt/sealgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER sealgate:sealgate
WORKDIR /var/lib/sealgate
VOLUME ["/var/lib/sealgate"]
# 10025: the milter over TCP between containers; 9489: /metrics and /healthz.
EXPOSE 10025 9489
# Ready only when config, policy, anchors and a valid CRL are loaded (503 otherwise).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9489/healthz', timeout=4)"]
ENTRYPOINT ["sealgate", "milter"]
CMD ["--config", "/etc/sealgate/sealgate.toml", "--log-format", "json"]
