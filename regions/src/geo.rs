//! Great-circle distance, for ordering the sites of one region by nearness to a client.

const EARTH_RADIUS_KM: f64 = 6371.0;

/// Haversine distance in kilometres between two `(lat, lon)` points given in degrees.
pub fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        let frankfurt = (50.1, 8.7);
        let dublin = (53.3, -6.3);
        let d = great_circle_km(frankfurt, dublin);
        assert!((1050.0..1120.0).contains(&d), "{d}");
        assert_eq!(great_circle_km(frankfurt, frankfurt), 0.0);
        // Antipodes: half the circumference.
        let half = great_circle_km((0.0, 0.0), (0.0, 180.0));
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }
}
