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
