# syntax=docker/dockerfile:1
# Build: docker build -t invitebot .
# Run:   docker run --env-file invitebot.env -p 127.0.0.1:3000:3000 -v invitebot-data:/data \
#          -v /etc/invitebot:/etc/invitebot:ro -e INVITEBOT_CONFIG=/etc/invitebot/policy.yaml invitebot
#        (README, "Deploying": HTTPS in front, secrets as VAR_FILE, SIGHUP, backups)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/invitebot ./cmd/invitebot \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/invitebot /usr/local/bin/invitebot
# The volume's mount point must belong to the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
# bbolt is single-process: one replica, the file on a volume.
ENV INVITEBOT_DB=/data/invitebot.db INVITEBOT_ADDR=:3000
VOLUME ["/data"]
EXPOSE 3000
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/invitebot"]
CMD ["serve"]
