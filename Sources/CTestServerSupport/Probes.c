#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CTestServerSupport.h"

int plane_probe_unshare(void) {
    return unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0 ? 0 : errno;
}

int plane_probe_keyctl(void) {
    // KEYCTL_GET_KEYRING_ID = 0, KEY_SPEC_SESSION_KEYRING = -3, create = 1.
    return syscall(SYS_keyctl, 0, -3, 1) >= 0 ? 0 : errno;
}

int plane_probe_mount(void) {
    return mount("tmpfs", "/mnt", "tmpfs", 0, NULL) == 0 ? 0 : errno;
}
