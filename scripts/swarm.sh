#!/usr/bin/env bash
# `make swarm-up` / `make swarm-down`: ringlb on Docker Swarm.
#
# up:   joins nothing and creates only what is missing: a single-node swarm
#       on 127.0.0.1 if the engine is in none, the attachable overlay network,
#       then deploys docker/swarm-stack.yml as stack $RINGLB_STACK and waits
#       until the data plane answers on $RINGLB_PORT.
# down: removes the stack, then every replica service of the network, then
#       what `up` created (network, swarm, docker_gwbridge) and nothing else:
#       a swarm that was there before `up` is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${RINGLB_STACK:-ringlb}
NETWORK=${RINGLB_SWARM_NETWORK:-net1}
PORT=${RINGLB_PORT:-5000}
WAIT_SECS=${RINGLB_SWARM_WAIT_SECS:-90}
# What `up` created, so that `down` removes exactly that.
state=target/swarm
export RINGLB_SWARM_NETWORK=$NETWORK

fail() { echo "swarm.sh: $*" >&2; exit 1; }

node_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }

# Poll "$@" every 0.5 s until it succeeds or $1 seconds pass.
within() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

nothing_listed() { [ -z "$("$@")" ]; }

up() {
  docker info >/dev/null 2>&1 || fail "no Docker engine answers 'docker info'"
  for image in ringlb-replica ringlb-control-plane ringlb-data-plane; do
    docker image inspect "$image:latest" >/dev/null 2>&1 ||
      fail "image $image:latest is missing: run 'make build' first"
  done
  mkdir -p "$state"
  case $(node_state) in
    inactive)
      docker network inspect docker_gwbridge >/dev/null 2>&1 || touch "$state/created-gwbridge"
      docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
      touch "$state/created-swarm"
      echo "Initialised a single-node swarm on 127.0.0.1 ('make swarm-down' leaves it again)."
      ;;
    active)
      [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] ||
        fail "this engine is a swarm worker: run 'make swarm-up' on a manager"
      [ -e "$state/created-swarm" ] ||
        echo "Using the swarm this engine is already in ('make swarm-down' will not leave it)."
      ;;
    *) fail "the engine's swarm state is '$(node_state)'; expected inactive or active" ;;
  esac
  if docker network inspect "$NETWORK" >/dev/null 2>&1; then
    local kind
    kind=$(docker network inspect "$NETWORK" --format '{{.Driver}} {{.Attachable}}')
    [ "$kind" = "overlay true" ] ||
      fail "network $NETWORK exists but is not an attachable overlay ($kind); 'make down' removes the Compose system's net1, or set RINGLB_SWARM_NETWORK"
  else
    docker network create --driver overlay --attachable "$NETWORK" >/dev/null
    touch "$state/created-network"
  fi
  docker stack deploy --detach=true --resolve-image never -c docker/swarm-stack.yml "$STACK" >/dev/null
  echo "Stack $STACK deployed; waiting for the data plane on :$PORT ..."
  home() { curl -fsS -o /dev/null "http://127.0.0.1:$PORT/home" 2>/dev/null; }
  within "$WAIT_SECS" home ||
    fail "the data plane did not answer /home on :$PORT within ${WAIT_SECS}s; see 'docker service ps ${STACK}_control-plane --no-trunc'"
  echo "ringlb is up on Swarm: curl localhost:$PORT/home"
}

down() {
  if [ "$(node_state)" = active ]; then
    if [ -n "$(docker stack ls --format '{{.Name}}' | grep -Fx "$STACK" || true)" ]; then
      # The control plane goes first, so it does not replace the replicas
      # removed below.
      docker stack rm "$STACK" >/dev/null
      within 60 nothing_listed docker ps -aq --filter "label=com.docker.stack.namespace=$STACK" ||
        fail "the stack's containers did not stop within 60 s"
    fi
    local services
    services=$(docker service ls -q --filter label=ringlb.managed=true --filter "label=ringlb.network=$NETWORK")
    if [ -n "$services" ]; then
      # shellcheck disable=SC2086
      docker service rm $services >/dev/null
    fi
    within 60 nothing_listed docker ps -aq --filter label=ringlb.managed=true --filter "label=ringlb.network=$NETWORK" ||
      fail "replica containers did not stop within 60 s"
  fi
  if [ -e "$state/created-network" ]; then
    within 30 docker network rm "$NETWORK" >/dev/null 2>&1 || fail "cannot remove network $NETWORK"
  fi
  if [ -e "$state/created-swarm" ]; then
    docker swarm leave --force >/dev/null
    echo "Left the swarm that 'make swarm-up' created."
  fi
  if [ -e "$state/created-gwbridge" ] && docker network inspect docker_gwbridge >/dev/null 2>&1; then
    within 30 docker network rm docker_gwbridge >/dev/null 2>&1 || fail "cannot remove docker_gwbridge"
  fi
  rm -rf "$state"
  echo "ringlb's swarm services are gone."
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) fail "usage: swarm.sh up|down" ;;
esac
