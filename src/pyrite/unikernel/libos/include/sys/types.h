#ifndef _PYRITE_SYS_TYPES_H
#define _PYRITE_SYS_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef long ssize_t;
typedef long off_t;
typedef long time_t;
typedef long suseconds_t;
typedef unsigned useconds_t;
typedef int pid_t;
typedef int clockid_t;

#endif
