/* Exits with the status given as its first argument (default 0), via exit() when the
 * second argument is "exit", else by returning from main. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int status = argc > 1 ? atoi(argv[1]) : 0;
    printf("exiting with %d\n", status);
    if (argc > 2 && strcmp(argv[2], "exit") == 0)
        exit(status);
    return status;
}
