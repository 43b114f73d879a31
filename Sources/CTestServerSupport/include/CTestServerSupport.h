// Probes plane-test-server runs inside a backend to show what its sandbox allows.
#ifndef PLANE_TEST_SERVER_SUPPORT_H
#define PLANE_TEST_SERVER_SUPPORT_H

/// unshare(CLONE_NEWUSER | CLONE_NEWNS): 0, or the errno. Call it before any thread exists.
int plane_probe_unshare(void);
/// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1): 0, or the errno.
int plane_probe_keyctl(void);
/// mount("tmpfs", "/mnt", "tmpfs", 0, NULL): 0, or the errno.
int plane_probe_mount(void);

#endif
