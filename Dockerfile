# postseal on Node 24, as the unprivileged `postseal` user. /etc/postseal holds the config
# (examples/docker/postseal.yaml and the shipped policy banks unless you mount your own), whose
# spool.dir is the /var/spool/postseal volume and whose state store is on /var/lib/postseal/state.
# Listeners must bind an address Postfix can reach (set listeners[].address in the mounted
# config, e.g. 0.0.0.0 on a private network), and forward targets must point at the Postfix host.
FROM node:24-slim
WORKDIR /opt/postseal
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY policy-banks ./policy-banks
COPY postseal.yaml ./
COPY templates ./templates
# --ignore-scripts: the image's own Node 24 runs postseal, so the `node` package's binary is not fetched.
RUN npm ci --ignore-scripts && npx tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts \
    && groupadd --system postseal && useradd --system --gid postseal --home-dir /var/lib/postseal --shell /usr/sbin/nologin postseal \
    && mkdir -p /etc/postseal/keys /var/lib/postseal/state /var/spool/postseal \
    && cp -r policy-banks /etc/postseal/ \
    && chown -R postseal:postseal /var/spool/postseal /var/lib/postseal/state \
    && chmod 0700 /var/spool/postseal /var/lib/postseal/state
COPY examples/docker/postseal.yaml /etc/postseal/postseal.yaml
USER postseal
VOLUME ["/etc/postseal", "/var/lib/postseal/state", "/var/spool/postseal"]
EXPOSE 10024 10026 10028
ENTRYPOINT ["node", "/opt/postseal/dist/cli/main.js"]
CMD ["start", "--config", "/etc/postseal/postseal.yaml"]
