/* Build-time tool: writes the commented example coffre.conf and the
 * settings section of coffre.conf(5) from the table of settings
 * (conf_settings[]), so that neither can miss or misstate a setting.
 *
 *   coffre-confdoc example            the example file, on stdout
 *   coffre-confdoc man TEMPLATE       TEMPLATE with its @SETTINGS@ line
 *                                     replaced by one entry per setting */
#include <stdio.h>
#include <string.h>

#include "server/base/config.h"

#define WRAP 76

/* text as "# " lines of at most WRAP columns */
static void comment_wrapped(const char *text)
{
    const char *p = text;

    while (*p) {
        size_t room = WRAP - 2, len = strlen(p), cut = len;
        if (len > room) {
            cut = room;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0) /* one word longer than a line */
                for (cut = room; p[cut] && p[cut] != ' '; cut++)
                    ;
        }
        printf("# %.*s\n", (int)cut, p);
        p += cut;
        while (*p == ' ')
            p++;
    }
}

static void example(void)
{
    const char *group = NULL;

    printf("# coffre.conf: the configuration of coffred and coffrectl, coffre.conf(5).\n"
           "#\n"
           "# Every setting stands below with its default, commented out: uncomment\n"
           "# the ones to change. One `key = value` per line; `#` starts a comment.\n"
           "# Sizes take k, M and G; durations ms, s, m and h (a bare number is\n"
           "# seconds). A listener takes a comma-separated list of ADDR:PORT,\n"
           "# [V6ADDR]:PORT or *:PORT (lmtp_listen also unix:/path); empty turns the\n"
           "# service off. Check a change with `coffred --check-config`, then\n"
           "# restart coffred (SIGHUP reloads only the certificates).\n");
    for (size_t i = 0; i < conf_n_settings; i++) {
        const struct conf_setting *s = &conf_settings[i];
        if (!group || strcmp(group, s->group)) {
            group = s->group;
            printf("\n# ==== %s ====\n", group);
        }
        printf("\n");
        comment_wrapped(s->doc);
        printf("#%s = %s\n", s->name, s->def);
    }
}

/* troff: a backslash is \e, a hyphen in a literal value \- (so that it is
 * copied as one), and a line never starts with a control character */
static void troff(const char *text, bool literal)
{
    if (text[0] == '.' || text[0] == '\'')
        fputs("\\&", stdout);
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            fputs("\\e", stdout);
        else if (*p == '-' && literal)
            fputs("\\-", stdout);
        else if (*p == ':' && literal)
            fputs(":\\:", stdout); /* a long priority string may break there */
        else
            putchar(*p);
    }
}

static void settings_section(void)
{
    const char *group = NULL;

    /* ragged right, unhyphenated: values are long words */
    printf(".ad l\n.nh\n");
    for (size_t i = 0; i < conf_n_settings; i++) {
        const struct conf_setting *s = &conf_settings[i];
        if (!group || strcmp(group, s->group)) {
            group = s->group;
            printf(".SS %s\n", group);
        }
        printf(".TP\n\\fB");
        troff(s->name, true);
        printf("\\fR = ");
        if (s->def[0]) {
            printf("\\fI");
            troff(s->def, true);
            printf("\\fR");
        } else {
            printf("(empty)");
        }
        printf("\n");
        troff(s->doc, false);
        printf(".\n");
    }
}

static int man(const char *template)
{
    FILE *f = fopen(template, "r");
    char line[4096];
    int found = 0;

    if (!f) {
        perror(template);
        return 1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (!strcmp(line, "@SETTINGS@\n")) {
            settings_section();
            found = 1;
        } else {
            fputs(line, stdout);
        }
    }
    fclose(f);
    if (!found) {
        fprintf(stderr, "%s: no @SETTINGS@ line\n", template);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "example")) {
        example();
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "man"))
        return man(argv[2]);
    fprintf(stderr, "usage: coffre-confdoc example | man TEMPLATE\n");
    return 1;
}
