# Shell helpers shared by the launch scripts (sourced, never run). The sourcing script defines
# `usage` and sets DRY_RUN before calling `run`/`probe`.

# A bad command line: the reason, the synopsis, exit status 2.
die() {
  local name
  name=$(basename "$0")
  echo "$name: $*" >&2
  usage | sed '/^$/q' >&2
  echo "(launch/$name --help for every option)" >&2
  exit 2
}

# Quotes one word for a POSIX shell: bare when it is safe, else in single quotes.
quote() {
  local safe='^[A-Za-z0-9_./:=,@%+-]+$'
  if [[ $1 =~ $safe ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Joins its arguments into one shell command line.
join_quoted() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

# Prints a command as `+ cmd`, then runs it unless this is a dry run.
run() {
  echo "+ $(join_quoted "$@")"
  if [[ $DRY_RUN != 1 ]]; then
    "$@"
  fi
}

# Prints `+ export NAME=VALUE` and exports it (srun and the workers inherit the environment).
set_env() {
  echo "+ export $1=$(quote "$2")"
  export "$1=$2"
}
