package identity_test

import (
	"fmt"

	"github.com/ocapnet/ocapnet/identity"
)

// The key seed "c8" is the one upstream's local relay uses: its peer ID is
// well known (and so is its private key: never use short seeds in production).
func ExampleParseSeedHex() {
	seed, err := identity.ParseSeedHex("c8")
	if err != nil {
		panic(err)
	}
	fmt.Println(seed.PeerID())
	fmt.Println(seed.Hex())
	fmt.Println("weak:", identity.IsWeakSeedHex("c8"))
	// Output:
	// 12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc
	// c800000000000000000000000000000000000000000000000000000000000000
	// weak: true
}

func ExampleSeedFromMnemonic() {
	seed, err := identity.SeedFromMnemonic("legal winner thank year wave sausage worth useful legal winner thank yellow")
	if err != nil {
		panic(err)
	}
	fmt.Println(seed.Hex())
	fmt.Println(seed.PeerID())
	// Output:
	// 878386efb78845b3355bd15ea4d39ef97d179cb712b77d5c12b6be415fffeffe
	// 12D3KooWPCyWnZCXR3VGdrQjLr5d8TBaAHD956XZvo6xoCXYB5AR
}
