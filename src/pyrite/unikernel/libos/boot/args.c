/*
 * Command line -> argv and environment.
 *
 * Words are separated by blanks (space, tab, newline) outside double quotes. A double
 * quote starts or ends a quoted part and is removed ("a b" is one word, a"b c"d is "ab cd").
 * Inside quotes a backslash escapes: \" is ", \\ is \, \xHH is the byte HH (two hex
 * digits); any other backslash is itself. Outside quotes a backslash is itself.
 *   - Before a "--" word (or when there is none): a word NAME=VALUE whose NAME, a C
 *     identifier, and "=" are unquoted goes to the environment (VALUE may be quoted);
 *     every other word is an argument.
 *   - After "--": every word is an argument, NAME=VALUE included. A quoted "--" is an argument.
 *   - Anywhere: an unquoted word virtio_mmio.device=... places a virtio device for the
 *     library OS (drivers/virtio_mmio.c reads it from the raw command line) and is dropped
 *     here; VMMs append such words after the application's own, so after any "--".
 * So `-append "a b c"` gives argv = {name, "a", "b", "c"}, `-append "DEBUG=1 -- x=y"` gives
 * argv = {name, "x=y"}, environ = {"DEBUG=1"}, and `-append '"say \"hi\"" "x=1"'` gives
 * argv = {name, "say \"hi\"", "x=1"}. pyrite.unikernel.cmdline.quote_args() is the encoder.
 */
#include <string.h>
#include <pyrite/boot.h>
#include <pyrite/virtio.h>

enum word_kind { WORD_ARG, WORD_ENV, WORD_DASHES, WORD_VMM };

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n'; }

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* What the raw (still quoted) word at `w` is: decided by its unquoted beginning. */
static enum word_kind raw_kind(const char *w)
{
    if (w[0] == '-' && w[1] == '-' && (!w[2] || is_blank(w[2])))
        return WORD_DASHES;
    if (strncmp(w, PYRITE_VIRTIO_MMIO_PARAM, sizeof PYRITE_VIRTIO_MMIO_PARAM - 1) == 0)
        return WORD_VMM;
    if (!((*w >= 'A' && *w <= 'Z') || (*w >= 'a' && *w <= 'z') || *w == '_'))
        return WORD_ARG;
    for (w++; *w != '='; w++)
        if (!((*w >= 'A' && *w <= 'Z') || (*w >= 'a' && *w <= 'z') || (*w >= '0' && *w <= '9') || *w == '_' || *w == '.'))
            return WORD_ARG;
    return WORD_ENV;
}

const char *pyrite_cmdline_word_end(const char *p)
{
    int quoted = 0;
    for (; *p && (quoted || !is_blank(*p)); p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (quoted && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
    }
    return p;
}

/* Cut the next word out of *cursor, decoding it in place; NULL at the end. */
static char *next_word(char **cursor, enum word_kind *kind)
{
    char *p = *cursor;
    while (is_blank(*p))
        p++;
    if (!*p)
        return NULL;
    *kind = raw_kind(p);
    char *word = p, *out = p;
    int quoted = 0;
    for (; *p && (quoted || !is_blank(*p)); p++) {
        if (*p == '"') {
            quoted = !quoted;
        } else if (quoted && *p == '\\' && (p[1] == '"' || p[1] == '\\')) {
            *out++ = *++p;
        } else if (quoted && *p == '\\' && p[1] == 'x' && hex_digit(p[2]) >= 0 && hex_digit(p[3]) >= 0) {
            *out++ = (char)(hex_digit(p[2]) << 4 | hex_digit(p[3]));
            p += 3;
        } else {
            *out++ = *p;
        }
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
    for (;;) {
        while (is_blank(*line))
            line++;
        if (!*line)
            return 0;
        if (raw_kind(line) != WORD_VMM)
            return 1;
        line = pyrite_cmdline_word_end(line);
    }
}

int pyrite_split_cmdline(char *line, char **argv, int max_argv, char **envp, int max_envp)
{
    int argc = 0, envc = 0, after_dashes = 0;
    enum word_kind kind;
    char *word;
    while ((word = next_word(&line, &kind)) != NULL) {
        if (kind == WORD_VMM)
            continue;
        if (!after_dashes && kind == WORD_DASHES)
            after_dashes = 1;
        else if (!after_dashes && kind == WORD_ENV) {
            if (envc < max_envp)
                envp[envc++] = word;
        } else if (argc < max_argv)
            argv[argc++] = word;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    return argc;
}
