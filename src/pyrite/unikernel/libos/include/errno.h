#ifndef _PYRITE_ERRNO_H
#define _PYRITE_ERRNO_H

extern int errno;

#define EPERM   1
#define ENOENT  2
#define EIO     5
#define EBADF   9
#define EAGAIN  11
#define ENOMEM  12
#define EINVAL  22
#define ERANGE  34
#define ENOSYS  38

#endif
