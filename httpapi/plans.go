package httpapi

import (
	"net/http"

	"github.com/billing-oss/billing/domain"
)

type plansJSON struct {
	CatalogVersion int           `json:"catalog_version"`
	Data           []domain.Plan `json:"data"`
}

func (a *API) listPlans(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, plansJSON{CatalogVersion: a.catalog.Version(), Data: a.catalog.Plans()})
}
