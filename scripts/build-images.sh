#!/usr/bin/env bash
# Builds the Serverledge runtime images without any container registry.
#
# For each runtime (python, nodejs):
#   1. a base image serverledge/base-<rt>:<hash> is made from a root filesystem
#      that mmdebstrap builds from the host's own Debian mirror (read from the
#      host's apt sources), piped straight into `docker import`;
#   2. serverledge/runtime-<rt>:<tag> (tag latest by default) is built on top
#      of it from images/<rt>/Dockerfile, adding the executor binary and the
#      worker.
# Then examples/custom/Dockerfile, if present, becomes
# serverledge/example-custom:<tag>, built FROM the runtime images of that tag.
#
# Every image carries the label serverledge.inputs, a hash of everything it is
# built from; an image whose label matches is skipped, so a second run does
# nothing. See images/README.md.
#
# Usage: scripts/build-images.sh [runtime...]
# Environment:
#   FORCE=1              rebuild everything (e.g. to pick up security updates)
#   EXECUTOR=path        executor binary (default bin/serverledge-executor)
#   APT_SOURCES=file     read the mirror from this sources file instead of the
#                        host's /etc/apt/sources.list{,.d}
#   SERVERLEDGE_IMAGE_TAG=tag
#                        tag of the runtime and example images (default
#                        latest), e.g. to try an executor change without
#                        replacing the images a running node uses
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/scripts/build-images.sh"
HOOK="$ROOT/images/base/customize.sh"
EXECUTOR="${EXECUTOR:-$ROOT/bin/serverledge-executor}"
FORCE="${FORCE:-0}"
TAG="${SERVERLEDGE_IMAGE_TAG:-latest}"
LABEL="serverledge.inputs"
# Bump when the way a base root filesystem is made changes in a way the
# mmdebstrap command line does not show.
BASE_RECIPE=1

export DOCKER_BUILDKIT=0 # the legacy builder uses local images and needs no buildx plugin

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'build-images: error: %s\n' "$*" >&2
	exit 1
}

sha() { sha256sum | cut -d' ' -f1; }
file_sha() { sha256sum "$1" | cut -d' ' -f1; }

# image_label IMAGE prints the image's serverledge.inputs label, or nothing.
image_label() {
	docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_id() { docker image inspect -f '{{ .Id }}' "$1" 2>/dev/null || true; }

# retire_image OLD_ID NEW_REF removes a superseded image unless something still uses it.
retire_image() {
	local old="$1" new
	new="$(image_id "$2")"
	if [ -n "$old" ] && [ "$old" != "$new" ]; then
		docker rmi "$old" >/dev/null 2>&1 || true
	fi
}

check_tools() {
	command -v docker >/dev/null || die "docker is not installed"
	if ! docker info >/dev/null 2>&1; then
		die "Docker does not answer ('docker info' failed); start the daemon or check your permissions"
	fi
	if ! command -v mmdebstrap >/dev/null; then
		if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
			log "installing mmdebstrap"
			apt-get update -qq
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
		else
			die "mmdebstrap is missing; install it (apt-get install mmdebstrap) or run this script as root"
		fi
	fi
	[ -f "$EXECUTOR" ] || die "executor binary $EXECUTOR not found; run 'make build' first"
}

# source_entries prints one tab-separated line "URI SUITE COMPONENTS SIGNED-BY"
# per deb entry in the apt sources files given as arguments (one-line and
# deb822 formats). SIGNED-BY is empty unless it names a keyring file.
source_entries() {
	local f
	for f in "$@"; do
		[ -f "$f" ] || continue
		case "$f" in
		*.sources)
			awk '
			function flush(   n, m, i, j, U, S) {
				if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "" && suites != "") {
					if (signed !~ /^\//) signed = ""
					n = split(uris, U, " "); m = split(suites, S, " ")
					for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
						printf "%s\t%s\t%s\t%s\n", U[i], S[j], comps, signed
				}
				types = uris = suites = comps = signed = enabled = ""
			}
			/^#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { next }
			{
				k = tolower(substr($0, 1, index($0, ":") - 1))
				v = substr($0, index($0, ":") + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", v); gsub(/[ \t]+/, " ", v)
				if (k == "types") types = v
				else if (k == "uris") uris = v
				else if (k == "suites") suites = v
				else if (k == "components") comps = v
				else if (k == "signed-by") signed = v
				else if (k == "enabled") enabled = v
			}
			END { flush() }' "$f"
			;;
		*)
			awk '
			{ sub(/#.*/, "") }
			$1 != "deb" { next }
			{
				signed = ""; line = $0
				if (match(line, /\[[^]]*\]/)) {
					opts = substr(line, RSTART + 1, RLENGTH - 2)
					line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
					n = split(opts, O, " ")
					for (i = 1; i <= n; i++) if (O[i] ~ /^signed-by=\//) signed = substr(O[i], 11)
				}
				n = split(line, F, " ")
				if (n < 3) next
				comps = ""
				for (i = 4; i <= n; i++) comps = comps (comps == "" ? "" : " ") F[i]
				printf "%s\t%s\t%s\t%s\n", F[2], F[3], comps, signed
			}' "$f"
			;;
		esac
	done
}

# read_mirror sets SUITE and MIRRORS (mmdebstrap one-line source entries) from
# the host's apt sources: the entries of the host's own Debian release
# (SUITE, SUITE-updates, SUITE-security, ...), so third-party repositories
# configured on the host never end up in an image.
read_mirror() {
	local files=() codename="" uri suite comps signed line
	SOURCES_DESC="the host's apt sources"
	if [ -n "${APT_SOURCES:-}" ]; then
		files=("$APT_SOURCES")
		SOURCES_DESC="$APT_SOURCES"
	else
		files=(/etc/apt/sources.list)
		shopt -s nullglob
		files+=(/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
		shopt -u nullglob
	fi
	local entries
	entries="$(source_entries "${files[@]}")"
	[ -n "$entries" ] || die "no 'deb' entry found in $SOURCES_DESC (${files[*]})"
	if [ -r /etc/os-release ]; then
		codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
	fi
	if [ -z "$codename" ]; then
		codename="$(printf '%s\n' "$entries" | awk -F'\t' '$2 !~ /[-\/]/ { print $2; exit }')"
	fi
	[ -n "$codename" ] || die "cannot tell the host's Debian release from /etc/os-release or the apt sources"
	SUITE="$codename"
	MIRRORS=()
	BASE_URI=""
	while IFS=$'\t' read -r uri suite comps signed; do
		case "$suite" in
		"$codename" | "$codename"-*) ;;
		*) continue ;;
		esac
		[ -n "$comps" ] || comps=main
		line="deb"
		[ -z "$signed" ] || line+=" [signed-by=$signed]"
		MIRRORS+=("$line $uri $suite $comps")
		if [ "$suite" = "$codename" ] && [ -z "$BASE_URI" ]; then
			BASE_URI="$uri"
		fi
	done <<<"$entries"
	[ -n "$BASE_URI" ] || die "$SOURCES_DESC have no entry for suite '$codename'"
	# mmdebstrap runs apt with its own configuration: pass on the host's proxies.
	local scheme proxy
	PROXY_OPTS=()
	for scheme in http https; do
		proxy="$(apt-config dump 2>/dev/null | awk -v k="Acquire::$scheme::Proxy" '$1 == k { gsub(/[";]/, "", $2); print $2; exit }')"
		[ -z "$proxy" ] || PROXY_OPTS+=(--aptopt="Acquire::$scheme::Proxy \"$proxy\"")
	done
}

# check_mirror fails unless the mirror serves the suite's release file.
check_mirror() {
	local tmp helper=/usr/lib/apt/apt-helper
	[ -x "$helper" ] || return 0
	tmp="$(mktemp -d)"
	if ! timeout 60 "$helper" download-file "${BASE_URI%/}/dists/$SUITE/InRelease" "$tmp/InRelease" >/dev/null 2>&1; then
		rm -rf "$tmp"
		die "the Debian mirror $BASE_URI (from $SOURCES_DESC) is unreachable for suite '$SUITE'"
	fi
	rm -rf "$tmp"
}

# packages_of RT prints the packages listed in images/RT/packages, comma-separated.
packages_of() {
	sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ROOT/images/$1/packages" | grep -v '^$' | paste -sd, -
}

# mmdebstrap_args RT sets ARGS to the mmdebstrap command line of RT's root filesystem.
mmdebstrap_args() {
	local rt="$1" pkgs
	pkgs="$(packages_of "$rt")"
	[ -n "$pkgs" ] || die "images/$rt/packages lists no package"
	ARGS=(
		--variant=essential
		--mode=auto
		--format=tar
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
		--include="$pkgs"
		--dpkgopt='path-exclude=/usr/share/doc/*'
		--dpkgopt='path-include=/usr/share/doc/*/copyright'
		--dpkgopt='path-exclude=/usr/share/man/*'
		--dpkgopt='path-exclude=/usr/share/info/*'
		--dpkgopt='path-exclude=/usr/share/locale/*'
		--dpkgopt='path-exclude=/usr/share/lintian/*'
		--dpkgopt='path-exclude=/usr/lib/*/gconv/*'
		--customize-hook="$HOOK"
	)
	ARGS+=("${PROXY_OPTS[@]}" "$SUITE" - "${MIRRORS[@]}")
}

# build_base RT sets BASE_REF to RT's base image, building it when its inputs changed.
build_base() {
	local rt="$1" hash ref old_refs start logf tmp_ref
	mmdebstrap_args "$rt"
	hash="$({
		printf 'recipe %s\narch %s\n' "$BASE_RECIPE" "$(dpkg --print-architecture 2>/dev/null || uname -m)"
		printf '%s\n' "${ARGS[@]//"$ROOT"/.}"
		cat "$HOOK" "$ROOT/images/$rt/packages"
	} | sha)"
	ref="serverledge/base-$rt:${hash:0:16}"
	BASE_REF="$ref"
	BASE_HASH="$hash"
	if [ "$FORCE" != 1 ] && [ "$(image_label "$ref")" = "$hash" ]; then
		log "$rt: base image $ref up to date"
		return 0
	fi
	check_mirror
	log "$rt: building base rootfs from $BASE_URI ($SUITE) ..."
	start=$SECONDS
	logf="$(mktemp)"
	# Import under a temporary tag: if mmdebstrap fails half-way, docker import
	# may still have made an image of the partial tarball, which must never
	# carry the final tag.
	tmp_ref="serverledge/base-$rt:partial-$$"
	if ! mmdebstrap "${ARGS[@]}" 2>"$logf" |
		docker import --change "LABEL $LABEL=$hash" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/sh"]' - "$tmp_ref" >/dev/null 2>>"$logf"; then
		docker rmi "$tmp_ref" >/dev/null 2>&1 || true
		tail -n 30 "$logf" >&2
		rm -f "$logf"
		die "$rt: building the base root filesystem failed (see the lines above)"
	fi
	rm -f "$logf"
	docker tag "$tmp_ref" "$ref"
	docker rmi "$tmp_ref" >/dev/null
	log "$rt: base image $ref built in $((SECONDS - start))s ($(docker image inspect -f '{{ .Size }}' "$ref" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
	# Untag the bases of earlier inputs; their layers go once no image uses them.
	old_refs="$(docker images --format '{{ .Repository }}:{{ .Tag }}' "serverledge/base-$rt" | grep -vxF "$ref" || true)"
	[ -z "$old_refs" ] || docker rmi $old_refs >/dev/null 2>&1 || true
}

# build_runtime RT builds serverledge/runtime-RT:$TAG on top of its base image.
build_runtime() {
	local rt="$1" worker ref hash ctx old start
	case "$rt" in
	python) worker="images/python/worker.py" ;;
	nodejs) worker="images/nodejs/worker.js" ;;
	*) die "unknown runtime '$rt' (known: python, nodejs)" ;;
	esac
	[ -f "$ROOT/$worker" ] || die "$worker not found"
	[ -f "$ROOT/images/$rt/packages" ] || die "images/$rt/packages not found"
	build_base "$rt"
	ref="serverledge/runtime-$rt:$TAG"
	hash="$({
		printf 'base %s\n' "$BASE_HASH"
		file_sha "$ROOT/images/$rt/Dockerfile"
		file_sha "$EXECUTOR"
		file_sha "$ROOT/$worker"
		file_sha "$SCRIPT"
	} | sha)"
	if [ "$FORCE" != 1 ] && [ "$(image_label "$ref")" = "$hash" ]; then
		log "$rt: up to date ($ref)"
		return 0
	fi
	log "$rt: building $ref ..."
	start=$SECONDS
	ctx="$(mktemp -d)"
	mkdir -p "$ctx/bin" "$ctx/$(dirname "$worker")"
	cp "$EXECUTOR" "$ctx/bin/serverledge-executor"
	cp "$ROOT/$worker" "$ctx/$worker"
	cp "$ROOT/images/$rt/Dockerfile" "$ctx/Dockerfile"
	old="$(image_id "$ref")"
	if ! docker build --build-arg "BASE_IMAGE=$BASE_REF" --label "$LABEL=$hash" -t "$ref" "$ctx" >"$ctx.log" 2>&1; then
		tail -n 30 "$ctx.log" >&2
		rm -rf "$ctx" "$ctx.log"
		die "$rt: docker build of $ref failed (see the lines above)"
	fi
	rm -rf "$ctx" "$ctx.log"
	retire_image "$old" "$ref"
	log "$rt: $ref built in $((SECONDS - start))s ($(docker image inspect -f '{{ .Size }}' "$ref" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

# build_example builds examples/custom/Dockerfile as serverledge/example-custom:$TAG,
# its FROM lines naming serverledge/runtime-*:latest rewritten to $TAG.
# Every Go main package in a subdirectory (e.g. worker/) is compiled into the
# staged build context's bin/ first, as the example's README does by hand.
build_example() {
	local dir="$ROOT/examples/custom" ref="serverledge/example-custom:$TAG" hash old from start ctx pkg go dockerfile
	[ -f "$dir/Dockerfile" ] || return 0
	dockerfile="$(sed -E "s#^(FROM[[:space:]]+serverledge/runtime-[a-z]+):latest#\1:$TAG#I" "$dir/Dockerfile")"
	hash="$({
		printf 'tag %s\n' "$TAG"
		(cd "$dir" && find . -path ./bin -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		file_sha "$ROOT/go.mod"
		file_sha "$SCRIPT"
		# The ids of the local images it starts from (e.g. a runtime image).
		for from in $(printf '%s\n' "$dockerfile" | awk 'toupper($1) == "FROM" { print $2 }'); do
			printf '%s %s\n' "$from" "$(image_id "$from")"
		done
	} | sha)"
	if [ "$FORCE" != 1 ] && [ "$(image_label "$ref")" = "$hash" ]; then
		log "custom example: up to date ($ref)"
		return 0
	fi
	log "custom example: building $ref ..."
	start=$SECONDS
	ctx="$(mktemp -d)"
	(cd "$dir" && tar --exclude=./bin -cf - .) | tar -C "$ctx" -xf -
	printf '%s\n' "$dockerfile" >"$ctx/Dockerfile"
	for pkg in "$dir"/*/; do
		pkg="${pkg%/}"
		grep -qs '^package main' "$pkg"/*.go || continue
		go="$(command -v "${GO:-go}" || command -v /usr/local/go/bin/go || true)"
		[ -n "$go" ] || die "custom example: Go is needed to build examples/custom/${pkg##*/}"
		if ! (cd "$ROOT" && CGO_ENABLED=0 "$go" build -trimpath -ldflags '-s -w' -o "$ctx/bin/${pkg##*/}" "./examples/custom/${pkg##*/}"); then
			rm -rf "$ctx"
			die "custom example: go build of examples/custom/${pkg##*/} failed"
		fi
	done
	old="$(image_id "$ref")"
	if ! docker build --label "$LABEL=$hash" -t "$ref" "$ctx" >"$ctx.log" 2>&1; then
		tail -n 30 "$ctx.log" >&2
		rm -rf "$ctx" "$ctx.log"
		die "docker build of $ref failed (see the lines above)"
	fi
	rm -rf "$ctx" "$ctx.log"
	retire_image "$old" "$ref"
	log "custom example: $ref built in $((SECONDS - start))s"
}

main() {
	local runtimes=("$@") rt lock
	[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "SERVERLEDGE_IMAGE_TAG '$TAG' is not a valid image tag"
	[ ${#runtimes[@]} -gt 0 ] || runtimes=(python nodejs)
	check_tools
	read_mirror
	# Concurrent runs (parallel test packages) would race on the same tags.
	lock="${TMPDIR:-/tmp}/serverledge-build-images.lock"
	exec 9>"$lock"
	flock 9
	for rt in "${runtimes[@]}"; do
		build_runtime "$rt"
	done
	build_example
	# Drop superseded images of ours that nothing uses any more.
	docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
}

# Run only when executed, so the functions can be sourced for testing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main "$@"
fi
