// Linux interfaces the Glibc module does not bring in.
#include <sys/xattr.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>
#include <spawn.h>
#include <fcntl.h>

// glibc 2.34+ (declared only under _GNU_SOURCE, which the Swift Glibc module is not built with).
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int);

/// posix_spawn flag: the child starts a new session (glibc's POSIX_SPAWN_SETSID).
static const short PLANE_POSIX_SPAWN_SETSID = 0x80;

/// Makes the spawned child close every descriptor from `from` up.
static inline int plane_spawn_add_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

/// A file descriptor that becomes readable when process `pid` ends (Linux 5.3+), or -1 with errno.
static inline int plane_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), which OCI runtimes use for
/// recursively read-only mounts (`rro`): an invalid call fails with EBADF or EINVAL there,
/// with ENOSYS on an older kernel.
static inline int plane_has_mount_setattr(void) {
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
    long result = syscall(SYS_mount_setattr, -1, "", 0, (void *)0, 0);
    return !(result != 0 && errno == ENOSYS);
}

/// Marks every descriptor from `first` on close-on-exec (close_range with
/// CLOSE_RANGE_CLOEXEC, Linux 5.11), leaving them open in this process: safe in a process
/// whose runtime (libdispatch's event loop) owns descriptors of its own.
static inline int plane_cloexec_from(unsigned int first) {
#ifdef SYS_close_range
    return (int)syscall(SYS_close_range, first, ~0U, 1U << 2 /* CLOSE_RANGE_CLOEXEC */);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/// A pipe whose ends are closed on exec (pipe2 is declared only under _GNU_SOURCE).
extern int pipe2(int fds[2], int flags);
static inline int plane_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

/// A connected pair of stream sockets, closed on exec.
static inline int plane_socketpair_cloexec(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

/// Makes the caller the child subreaper: orphaned descendants are re-parented to it.
static inline int plane_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

/// Exit status helpers (the W* macros are not imported into Swift).
static inline int plane_wifexited(int status) { return WIFEXITED(status); }
static inline int plane_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int plane_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int plane_wtermsig(int status) { return WTERMSIG(status); }

/// The calling thread leaves for a mount namespace of its own, with every mount private
/// and `detach` (when not NULL) lazily unmounted in it; what it spawns from then on starts
/// there. Returns a descriptor of the namespace it was in (for
/// `plane_return_to_mount_namespace`), or -1 with errno (then it is still where it was).
/// unshare and setns are syscalls, declared only under _GNU_SOURCE.
static inline int plane_enter_private_mount_namespace(const char *detach) {
    int original = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (original < 0) return -1;
    if (syscall(SYS_unshare, 0x00020000 /* CLONE_NEWNS */) != 0) {
        int saved = errno;
        close(original);
        errno = saved;
        return -1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0
        || (detach != NULL && umount2(detach, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)) {
        int saved = errno;
        syscall(SYS_setns, original, 0x00020000);
        close(original);
        errno = saved;
        return -1;
    }
    return original;
}

/// Back to the mount namespace `original` came from (closing it); the private one goes
/// away with the last process in it. setns moves the working directory to the namespace's
/// root; the caller's is taken back by its path (the same directory there, which is how
/// the drone recognises a shim by its working directory). 0, or -1 with errno.
static inline int plane_return_to_mount_namespace(int original) {
    char directory[4096];
    int hasDirectory = getcwd(directory, sizeof directory) != NULL;
    int result = (int)syscall(SYS_setns, original, 0x00020000 /* CLONE_NEWNS */);
    int saved = errno;
    close(original);
    if (result == 0 && hasDirectory && chdir(directory) != 0) {
        saved = errno;
        result = -1;
    }
    errno = saved;
    return result;
}

// btrfs subvolumes with a quota group limit (a backend's writable layer).
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <stdint.h>
#include <string.h>
#include <linux/btrfs.h>

/// Whether `path` is on btrfs: 1, 0, or -1 with errno.
static inline int plane_is_btrfs(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return (unsigned long)info.f_type == 0x9123683EUL;
}

/// Creates subvolume `name` in the directory `parent` (BTRFS_IOC_SUBVOL_CREATE). 0, or -1
/// with errno.
static inline int plane_btrfs_create_subvolume(const char *parent, const char *name) {
    struct btrfs_ioctl_vol_args arguments;
    memset(&arguments, 0, sizeof arguments);
    if (strlen(name) > BTRFS_PATH_NAME_MAX) { errno = ENAMETOOLONG; return -1; }
    strncpy(arguments.name, name, BTRFS_PATH_NAME_MAX);
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int result = ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, &arguments);
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}

/// Limits what the subvolume at `path` refers to (its quota group's max_rfer) to `bytes`.
/// 0, or -1 with errno (ENOTCONN: quotas are not enabled on the filesystem).
static inline int plane_btrfs_limit_subvolume(const char *path, uint64_t bytes) {
    struct btrfs_ioctl_qgroup_limit_args arguments;
    memset(&arguments, 0, sizeof arguments);
    arguments.qgroupid = 0; /* the subvolume of the descriptor */
    arguments.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    arguments.lim.max_rfer = bytes;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int result = ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &arguments);
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}
