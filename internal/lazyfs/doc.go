// Package lazyfs is a FUSE filesystem for tests that loses, on a simulated
// power cut, everything that was not made durable with fsync, the way
// Jepsen's LazyFS does.
//
// A mount passes through to a backing directory, which always holds exactly
// the durable state. Everything else is held in a volatile layer in memory:
//
//   - File data and size. A write or truncate changes only the volatile
//     view of the file. fsync and fdatasync (treated alike) write the file's
//     data and size to the backing file. Reads, including the page faults of
//     an mmap, see the volatile view while the power is on.
//   - Directory entries. create, mkdir, unlink, rmdir and rename change only
//     the volatile namespace. fsync of a directory makes that directory's
//     entries durable: every entry added to it, removed from it, or renamed
//     into or out of it. A rename is made durable as a whole (both names) by
//     an fsync of either directory, as a journalling filesystem commits it in
//     one transaction; it is never durable half-way.
//   - A file or directory whose entry was never made durable has no durable
//     name. Its synced data is kept in an orphan area (a hidden directory in
//     the backing directory, OrphanDir) until its entry becomes durable, and
//     is lost on a power cut, as a real filesystem reclaims an inode with no
//     durable link: a file created and fsync'd whose directory was never
//     fsync'd is gone after a cut. A new file whose directory was fsync'd
//     but which was not itself fsync'd comes back empty.
//
// PowerCut discards the volatile layer, unmounts, deletes the orphan area and
// mounts again from the backing directory, so the mount shows only what was
// synced. Unmounting and mounting again (instead of invalidating caches) is
// what guarantees that no page of the kernel's page cache, attribute cache or
// dentry cache, in particular pages an mmap read, survives a cut. PowerCut
// kills nothing: it fails with ErrBusy while a process still has a file
// open on the mount; the power then stays off (every operation fails with
// EIO, nothing more becomes durable) until PowerCut succeeds.
//
// Unmount is a clean shutdown: like a real unmount it writes back everything
// first, so the backing directory then holds the last state of the mount.
//
// Limits of the model: no hard links, symbolic links, special files or
// extended attributes (ENOTSUP); RENAME_EXCHANGE and RENAME_WHITEOUT are
// refused (EINVAL); permission bits and ownership are applied to the backing
// files at once, not modelled as volatile; timestamps are kept in memory and
// not persisted; writes are not torn (a write that reached the filesystem is
// either wholly synced or wholly lost, per 4 KiB page) and are not reordered
// between syncs of different files. Locks (flock, POSIX locks) are handled by
// the kernel inside the mount and vanish with it. Everything goes through
// the mount; the backing directory must not be changed while mounted.
//
// The package is Linux-only. Mounting needs root and /dev/fuse (Debian:
// apt-get install fuse3); Available reports what is missing.
package lazyfs
