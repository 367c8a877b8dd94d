/*
 * Command line -> argv and environment.
 *
 * Words are separated by spaces or tabs; double quotes group ("a b" is one word, the
 * quotes are removed), as in Linux's own command-line parser.
 *   - Before a "--" word (or when there is none): a word NAME=VALUE, NAME being a C
 *     identifier, goes to the environment; every other word is an argument.
 *   - After "--": every word is an argument, NAME=VALUE included.
 *   - Anywhere: a word virtio_mmio.device=... places a virtio device for the library OS
 *     (drivers/virtio_mmio.c reads it from the raw command line) and is dropped here; VMMs
 *     append such words after the application's own, so after any "--".
 * So `-append "a b c"` gives argv = {name, "a", "b", "c"} and
 * `-append "DEBUG=1 -- x=y"` gives argv = {name, "x=y"}, environ = {"DEBUG=1"}.
 */
#include <string.h>
#include <pyrite/boot.h>
#include <pyrite/virtio.h>

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

/* Whether `line` has a word other than virtio_mmio.device=...: a command line of only the
 * VMM's device words counts as empty, so the image's default command line still applies. */
int pyrite_cmdline_has_words(const char *line)
{
    const size_t plen = sizeof PYRITE_VIRTIO_MMIO_PARAM - 1;
    for (;;) {
        line += strspn(line, " \t\n");
        if (!*line)
            return 0;
        if (strncmp(line, PYRITE_VIRTIO_MMIO_PARAM, plen) != 0)
            return 1;
        line += strcspn(line, " \t\n");
    }
}

int pyrite_split_cmdline(char *line, char **argv, int max_argv, char **envp, int max_envp)
{
    int argc = 0, envc = 0, after_dashes = 0;
    char *word;
    while ((word = next_word(&line)) != NULL) {
        if (strncmp(word, PYRITE_VIRTIO_MMIO_PARAM, sizeof PYRITE_VIRTIO_MMIO_PARAM - 1) == 0)
            continue;
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
