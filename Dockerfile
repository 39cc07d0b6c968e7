# postseal on Node 24. Configuration and keys are volumes; listeners must bind an address
# Postfix can reach (set listeners[].address in the mounted config, e.g. 0.0.0.0 on a
# private network), and forward targets must point at the Postfix host.
FROM node:24-slim
WORKDIR /opt/postseal
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY policy-banks ./policy-banks
COPY postseal.yaml ./
RUN npm ci --ignore-scripts && npx tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts \
    && mkdir -p /etc/postseal /var/lib/postseal/keys /var/lib/postseal/state /var/spool/postseal \
    && chown -R node:node /var/spool/postseal /var/lib/postseal/state
USER node
# The state store: set store.sqlite.file: /var/lib/postseal/state/postseal.db in the mounted config.
VOLUME ["/etc/postseal", "/var/lib/postseal/keys", "/var/lib/postseal/state", "/var/spool/postseal"]
EXPOSE 10024 10026 10028
ENTRYPOINT ["node", "/opt/postseal/dist/cli/main.js"]
CMD ["start", "--config", "/etc/postseal/postseal.yaml"]
