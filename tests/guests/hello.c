/* Prints hello and ends with status 0. */
#include <stdio.h>

int main(void)
{
    puts("hello from pyrite");
    return 0;
}
