/*
 * Command line -> argv and environment.
 *
 * Words are separated by spaces or tabs; double quotes group ("a b" is one word, the
 * quotes are removed), as in Linux's own command-line parser.
 *   - Before a "--" word (or when there is none): a word NAME=VALUE, NAME being a C
 *     identifier, goes to the environment; every other word is an argument.
 *   - After "--": every word is an argument, NAME=VALUE included.
 * So `-append "a b c"` gives argv = {name, "a", "b", "c"} and
 * `-append "DEBUG=1 -- x=y"` gives argv = {name, "x=y"}, environ = {"DEBUG=1"}.
 */
#include <string.h>
#include <pyrite/boot.h>

static int is_env_word(const char *w)
{
    if (!((*w >= 'A' && *w <= 'Z') || (*w >= 'a' && *w <= 'z') || *w == '_'))
        return 0;
    for (w++; *w && *w != '='; w++)
        if (!((*w >= 'A' && *w <= 'Z') || (*w >= 'a' && *w <= 'z') || (*w >= '0' && *w <= '9') || *w == '_' || *w == '.'))
            return 0;
    return *w == '=';
}

/* Cut the next word out of *cursor in place; NULL at the end. */
static char *next_word(char **cursor)
{
    char *p = *cursor;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    if (!*p)
        return NULL;
    char *word = p, *out = p;
    int quoted = 0;
    for (; *p && (quoted || (*p != ' ' && *p != '\t' && *p != '\n')); p++) {
        if (*p == '"')
            quoted = !quoted;
        else
            *out++ = *p;
    }
    if (*p)
        p++;
    *out = 0;
    *cursor = p;
    return word;
}

int pyrite_split_cmdline(char *line, char **argv, int max_argv, char **envp, int max_envp)
{
    int argc = 0, envc = 0, after_dashes = 0;
    char *word;
    while ((word = next_word(&line)) != NULL) {
        if (!after_dashes && strcmp(word, "--") == 0)
            after_dashes = 1;
        else if (!after_dashes && is_env_word(word)) {
            if (envc < max_envp)
                envp[envc++] = word;
        } else if (argc < max_argv)
            argv[argc++] = word;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    return argc;
}
