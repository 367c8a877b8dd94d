/* Arguments and environment: prints argc, each argument, getenv() of GREETING and of a
 * name never set, then every environment entry; exits with the number of arguments.
 * Standard C only (builds for the host too). */
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv)
{
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++)              /* argv[0] is the image's (or program's) name */
        printf("argv[%d]=%s\n", i, argv[i]);
    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");
    printf("NOT_SET=%s\n", getenv("NOT_SET") ? "set" : "(unset)");
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    return argc - 1;
}
