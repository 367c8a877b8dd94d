#ifndef _PYRITE_STRINGS_H
#define _PYRITE_STRINGS_H
#include <string.h>
#endif
