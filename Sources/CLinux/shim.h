// Linux interfaces the Glibc module does not bring in.
#include <sys/xattr.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
