"""The cities Feast Flow serves. Each city's events share one Kafka key, so one city is one ordered log."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    code: str
    name: str
    currency: str
    launching: bool = False  # listed before it has a menu: customers see it is coming, not an empty city

    def as_json(self) -> dict[str, str | bool]:
        return {"city": self.code, "name": self.name, "currency": self.currency, "launching": self.launching}


def _cities(currency: str, names: str) -> tuple[City, ...]:
    return tuple(City(code, name, currency) for code, name in (pair.split("=") for pair in names.split(",")))


# The 32 cities of the demo, each with a menu (`feastflow seed`). One city is one ordered log: its events
# share a Kafka key, so a city's changes stay in order on one partition (streams.catalog_agent).
DEFAULT_CITIES: tuple[City, ...] = (
    _cities(
        "INR",
        "blr=Bengaluru,mum=Mumbai,del=Delhi,hyd=Hyderabad,che=Chennai,kol=Kolkata,pun=Pune,ahm=Ahmedabad,"
        "jai=Jaipur,lko=Lucknow,koc=Kochi,chd=Chandigarh,ind=Indore,goa=Goa",
    )
    + _cities(
        "EUR",
        "ams=Amsterdam,ber=Berlin,par=Paris,mad=Madrid,bcn=Barcelona,mil=Milan,rom=Rome,vie=Vienna,dub=Dublin,"
        "lis=Lisbon",
    )
    + _cities("GBP", "lon=London,man=Manchester")
    + _cities("USD", "nyc=New York,sfo=San Francisco,chi=Chicago,aus=Austin,sea=Seattle,bos=Boston")
)


def parse_cities(spec: str) -> tuple[City, ...]:
    """Parse `code:Name:CUR,code:Name:CUR:launching` (the FEASTFLOW_CITIES setting)."""
    cities = []
    for part in spec.split(","):
        pieces = [piece.strip() for piece in part.split(":")]
        code, name, currency = pieces[:3]
        flags = pieces[3:]
        if flags not in ([], ["launching"]):
            raise ValueError(f"city {code!r}: unknown flag {':'.join(flags)!r} (only 'launching')")
        cities.append(City(code, name, currency, launching=bool(flags)))
    return tuple(cities)
