/* rand() and srand() of the library OS, in place of musl's (the linker takes these first).
 *
 * A 64-bit LCG, as C wants it (srand(s) repeats a sequence; no srand is srand(1)) within
 * one VM generation. When the VM generation ID (<pyrite/vmgenid.h>) differs from the one
 * seen at the last rand() or srand(), the VM was restored from a snapshot, perhaps as one
 * of many clones: the new ID is mixed into the state, so clones diverge. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/vmgenid.h>

static uint64_t rand_state = 1;
static uint8_t rand_generation[VMGENID_SIZE];
static int rand_generation_seen;

static uint64_t mix64(uint64_t z)                     /* splitmix64's finaliser */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Record the current generation; with `reseed`, mix it in if it changed since last seen. */
static void rand_follow_generation(int reseed)
{
    uint8_t id[VMGENID_SIZE];
    if (vmgenid_read(id) != 0)
        return;
    if (reseed && rand_generation_seen && memcmp(id, rand_generation, VMGENID_SIZE) != 0) {
        uint64_t low, high;
        memcpy(&low, id, 8);
        memcpy(&high, id + 8, 8);
        rand_state = mix64(rand_state ^ mix64(low ^ mix64(high)));
    }
    memcpy(rand_generation, id, VMGENID_SIZE);
    rand_generation_seen = 1;
}

void srand(unsigned seed)
{
    rand_follow_generation(0);                        /* an explicit seed stands as given */
    rand_state = seed;
}

int rand(void)
{
    rand_follow_generation(1);
    rand_state = rand_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)(rand_state >> 33);
}
