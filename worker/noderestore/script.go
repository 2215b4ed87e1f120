package noderestore

// The node-side steps are POSIX sh scripts run as `sh -c SCRIPT NAME ARG...`:
// the script is a constant of this package, and every value reaches it as a
// positional parameter, validated before and quoted word by word by the
// executor, never spliced into the script's text.

// placeScript puts one data directory at the barrier. Arguments: tag, aside
// name, source data directory (where <ks>/<table>-<id>/snapshots/<tag>
// live), live data directory, keyspaces (space-separated; empty for every
// keyspace), dropped tables (space-separated <ks>/<table>: emptied, never
// taken from the snapshot).
//
// In each live table directory every entry but snapshots/ and backups/ that
// is not already the snapshot's own file (the same inode: placed by an
// earlier run) is moved into snapshots/<aside>/ (a rename: same file
// system; under snapshots/ so that Cassandra's start-up checks skip it);
// then every file of snapshots/<tag> but manifest.json and schema.cql is
// hard-linked in. A table directory with no snapshots/<tag> did not exist at
// the barrier and is emptied the same way. Every step is safe to repeat: a
// rerun finds the snapshot's files in place and moves nothing.
//
// It prints one line: "placed N linked M moved K emptied E", then the emptied
// table directories, one per line, prefixed "emptied ".
const placeScript = `set -eu
tag=$1 aside=$2 src=$3 dst=$4 kss=" $5 " drop=" $6 "
placed=0 linked=0 moved=0 emptied=0 emptied_list=""

# moveaside FILE ASIDE_DIR: rename FILE into ASIDE_DIR, never over anything.
moveaside() {
	mkdir -p "$2"
	if [ -e "$2/${1##*/}" ] || [ -L "$2/${1##*/}" ]; then
		echo "quiesce-restore: $2/${1##*/} exists already; not moving $1 over it" >&2
		exit 3
	fi
	mv -- "$1" "$2/${1##*/}"
	moved=$((moved + 1))
}

# place LIVE SNAP ASIDE: make LIVE hold exactly SNAP's files (hard links).
place() {
	for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		n=${f##*/}
		case $n in snapshots|backups) continue ;; esac
		if [ -f "$f" ] && [ ! -L "$f" ] && [ -f "$2/$n" ] && [ "$f" -ef "$2/$n" ]; then
			placed=$((placed + 1))
			continue
		fi
		if [ -d "$f" ] && [ ! -L "$f" ] && [ -d "$2/$n" ]; then
			continue
		fi
		moveaside "$f" "$3"
	done
	for s in "$2"/* "$2"/.[!.]* "$2"/..?*; do
		[ -e "$s" ] || continue
		n=${s##*/}
		case $n in manifest.json|schema.cql) continue ;; esac
		if [ -d "$s" ]; then
			mkdir -p "$1/$n"
			place "$1/$n" "$s" "$3/$n"
			continue
		fi
		[ -e "$1/$n" ] && continue
		ln -- "$s" "$1/$n"
		linked=$((linked + 1))
		placed=$((placed + 1))
	done
}

# empty LIVE ASIDE: move every entry of LIVE but snapshots/ and backups/ aside.
empty() {
	had=0
	for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		case ${f##*/} in snapshots|backups) continue ;; esac
		moveaside "$f" "$2"
		had=1
	done
	if [ $had = 1 ]; then
		emptied=$((emptied + 1))
		emptied_list="$emptied_list
emptied $1"
	fi
}

wanted() { # KS: is keyspace KS restored?
	[ "$kss" = "  " ] && return 0
	case $kss in *" $1 "*) return 0 ;; esac
	return 1
}

dropped() { # KS TABLE_DIR_NAME
	case $drop in *" $1/${2%-*} "*) return 0 ;; esac
	return 1
}

valid_name() {
	case $1 in ''|*[!A-Za-z0-9_-]*) return 1 ;; esac
	return 0
}

[ -d "$dst" ] || { echo "quiesce-restore: data directory $dst does not exist" >&2; exit 3; }
[ -d "$src" ] || { echo "quiesce-restore: source directory $src does not exist" >&2; exit 3; }

# Live table directories: placed from the snapshot, or emptied.
for ksd in "$dst"/*; do
	[ -d "$ksd" ] && [ ! -L "$ksd" ] || continue
	ks=${ksd##*/}
	valid_name "$ks" || continue
	wanted "$ks" || continue
	for td in "$ksd"/*-*; do
		[ -d "$td" ] && [ ! -L "$td" ] || continue
		tn=${td##*/}
		valid_name "$tn" || continue
		sd="$src/$ks/$tn/snapshots/$tag"
		if dropped "$ks" "$tn" || [ ! -d "$sd" ]; then
			empty "$td" "$td/snapshots/$aside"
		else
			place "$td" "$sd" "$td/snapshots/$aside"
		fi
	done
done

# Table directories of the snapshot that have no live directory (a restore
# from a copy of the volume, a table dropped after the barrier).
if [ "$src" != "$dst" ]; then
	for sd in "$src"/*/*-*/snapshots/"$tag"; do
		[ -d "$sd" ] || continue
		td=${sd%/snapshots/*}
		tn=${td##*/}
		ksd=${td%/*}
		ks=${ksd##*/}
		valid_name "$ks" && valid_name "$tn" || continue
		wanted "$ks" || continue
		dropped "$ks" "$tn" && continue
		[ -d "$dst/$ks/$tn" ] && continue
		mkdir -p "$dst/$ks/$tn"
		place "$dst/$ks/$tn" "$sd" "$dst/$ks/$tn/snapshots/$aside"
	done
fi

echo "placed $placed linked $linked moved $moved emptied $emptied$emptied_list"
`

// emptyScript empties directories (commitlog, hints, saved caches,
// cdc_raw): every entry but the aside directories of restores is moved into
// DIR/<aside>. Arguments: aside name, then the directories. A directory
// that does not exist is left alone. It prints "moved N".
const emptyScript = `set -eu
aside=$1; shift
moved=0
for d in "$@"; do
	[ -d "$d" ] || continue
	for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		case ${f##*/} in .quiesce-displaced-*) continue ;; esac
		mkdir -p "$d/$aside"
		if [ -e "$d/$aside/${f##*/}" ]; then
			echo "quiesce-restore: $d/$aside/${f##*/} exists already; not moving $f over it" >&2
			exit 3
		fi
		mv -- "$f" "$d/$aside/${f##*/}"
		moved=$((moved + 1))
	done
done
echo "moved $moved"
`

// readProgressScript prints the progress record of a restore, or nothing
// when there is none. Argument: the record's path.
const readProgressScript = `set -eu
[ -f "$1" ] && cat -- "$1" || true
`

// writeProgressScript appends a line to the progress record, creating its
// directory, and syncs it to disk. Arguments: the record's path, the line.
const writeProgressScript = `set -eu
mkdir -p -- "${1%/*}"
printf '%s\n' "$2" >> "$1"
sync -- "$1" 2>/dev/null || sync
`

// teardownScript removes what drills restored onto a scratch node.
// Arguments: the progress record (it must exist: only a node this restore
// prepared is torn down), the restore work directory of the node (every
// restore's records: a scratch node's are all drills'), then the
// directories to empty. The work directory goes last, so an interrupted
// teardown can run again.
const teardownScript = `set -eu
record=$1 work=$2; shift 2
if [ ! -f "$record" ]; then
	echo "quiesce-restore: no progress record $record: this node was not restored by this drill; nothing removed" >&2
	exit 4
fi
for d in "$@"; do
	[ -d "$d" ] || continue
	find "$d" -mindepth 1 -maxdepth 1 ! -name .quiesce-restore -exec rm -rf -- {} +
done
rm -rf -- "$work"
`
