/* Reads lines from stdin and prints each in upper case, until a line "end" (a serial
 * console has no end of file) or end of input; exits with the number of lines read.
 * Standard C only, so the same file builds for the host. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    char line[512];
    int lines = 0;
    puts("type lines; \"end\" ends");
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strcmp(line, "end") == 0)
            break;
        for (char *p = line; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        printf("%s\n", line);
        lines++;
    }
    printf("lines=%d\n", lines);
    return lines;
}
