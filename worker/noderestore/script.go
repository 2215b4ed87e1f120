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
// is not already the snapshot's own file (placed by an earlier run) is
// moved into snapshots/<aside>/ (a rename: same file system; under
// snapshots/ so that Cassandra's start-up checks skip it); then every file
// of snapshots/<tag> but manifest.json and schema.cql is hard-linked in. A
// source on another file system (an EBS volume mounted for the restore) is
// copied instead, each file under a temporary name renamed when complete,
// and synced at the end. The snapshot's own file is the same inode, or,
// when copying, a file of the same name, size and modification time (an
// SSTable never changes once written). A table directory with no
// snapshots/<tag> did not exist at the barrier and is emptied the same way.
// Every step is safe to repeat: a rerun finds the snapshot's files in place
// and moves nothing.
//
// It prints one line: "placed N linked M copied C moved K emptied E", then
// the emptied table directories, one per line, prefixed "emptied ".
const placeScript = `set -eu
tag=$1 aside=$2 src=$3 dst=$4 kss=" $5 " drop=" $6 "
placed=0 linked=0 copied=0 moved=0 emptied=0 emptied_list=""
copy=0

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

# same LIVE SNAP: is LIVE the snapshot's file?
same() {
	[ "$1" -ef "$2" ] && return 0
	[ $copy = 1 ] && [ "$(stat -c %s.%Y -- "$1")" = "$(stat -c %s.%Y -- "$2")" ]
}

# place LIVE SNAP ASIDE: make LIVE hold exactly SNAP's files (hard links, or
# copies from another file system).
place() {
	for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		n=${f##*/}
		case $n in
		snapshots|backups) continue ;;
		*.quiesce-copy) rm -f -- "$f"; continue ;; # an interrupted copy
		esac
		if [ -f "$f" ] && [ ! -L "$f" ] && [ -f "$2/$n" ] && same "$f" "$2/$n"; then
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
		if [ $copy = 1 ]; then
			cp -p -- "$s" "$1/$n.quiesce-copy"
			mv -- "$1/$n.quiesce-copy" "$1/$n"
			copied=$((copied + 1))
		else
			ln -- "$s" "$1/$n"
			linked=$((linked + 1))
		fi
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
[ "$(stat -c %d -- "$src")" = "$(stat -c %d -- "$dst")" ] || copy=1

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

[ $copy = 0 ] || sync
echo "placed $placed linked $linked copied $copied moved $moved emptied $emptied$emptied_list"
`

// mountScript mounts the restored volume of a data directory. Arguments: the
// mount point, then the paths the volume's device may have on the node, most
// likely first. A mount point mounted already is left as it is (an earlier
// attempt mounted it). It waits up to a minute for one of the paths to be a
// block device (udev links a newly attached volume shortly after EC2 says it
// is attached); a device holding no file system but a first partition has it
// mounted. XFS is mounted with nouuid: in place, the restored copy of a
// volume has the UUID of the volume still mounted on the node.
const mountScript = `set -eu
mnt=$1; shift
if mountpoint -q -- "$mnt" 2>/dev/null; then
	echo "mounted already"
	exit 0
fi
dev="" waited=0
while [ -z "$dev" ]; do
	for d in "$@"; do
		if [ -b "$d" ]; then dev=$d; break; fi
	done
	[ -n "$dev" ] && break
	if [ $waited -ge 60 ]; then
		echo "quiesce-restore: the restored volume is not on this node: none of $* is a block device (is it attached to this instance?)" >&2
		exit 3
	fi
	sleep 1
	waited=$((waited + 1))
done
fstype=$(blkid -o value -s TYPE -- "$dev" 2>/dev/null || true)
if [ -z "$fstype" ]; then
	for p in "$dev-part1" "${dev}p1" "${dev}1"; do
		if [ -b "$p" ]; then dev=$p; break; fi
	done
	fstype=$(blkid -o value -s TYPE -- "$dev" 2>/dev/null || true)
fi
mkdir -p -- "$mnt"
if [ "$fstype" = xfs ]; then
	mount -o nouuid -- "$dev" "$mnt"
else
	mount -- "$dev" "$mnt"
fi
echo "mounted $dev"
`

// unmountScript unmounts the restored volumes of a node once their files
// are in place, and removes the mount points. Arguments: the mount points.
// One not mounted is left as it is.
const unmountScript = `set -eu
for mnt in "$@"; do
	if mountpoint -q -- "$mnt" 2>/dev/null; then
		umount -- "$mnt"
	fi
	rmdir -- "$mnt" 2>/dev/null || true
done
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
